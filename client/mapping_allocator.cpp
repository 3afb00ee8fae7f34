// SPDX-License-Identifier: MIT
#include "client/mapping_allocator.hpp"

#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

namespace xbuf::client::detail {

namespace {

// How often begin_use goes round when moves keep slipping in between its
// map and its fence: each round is a move that completed, so a few rounds
// only happen under pressure; many mean the buffer is being thrashed.
constexpr int max_use_rounds = 8;

std::string attachment_name(attachment_id id) { return "attachment " + std::to_string(id); }

}  // namespace

mapping_allocator::~mapping_allocator() { drop_views(); }

void mapping_allocator::drop_views() noexcept {
  std::map<attachment_id, std::shared_ptr<view_state>> gone;
  {
    xbuf::mutex_lock lock(table_mutex_);
    gone.swap(views_);
  }
  // The views unmap as `gone` goes: after the table lock, so no event
  // delivery waits on a munmap.
}

result<std::shared_ptr<mapping_allocator::view_state>> mapping_allocator::find(attachment_id id, const char* what) {
  xbuf::mutex_lock lock(table_mutex_);
  auto it = views_.find(id);
  if (it == views_.end()) {
    return fail(errc::not_found, std::string(what) + " " + attachment_name(id) + ": unknown to this client");
  }
  return it->second;
}

void mapping_allocator::on_move(move_callback cb) {
  xbuf::mutex_lock lock(table_mutex_);
  on_move_ = std::move(cb);
}

void mapping_allocator::moved(const move_event& e) {
  move_callback cb;
  {
    xbuf::mutex_lock lock(table_mutex_);
    if (auto it = views_.find(e.attachment); it != views_.end()) it->second->stale = true;
    cb = on_move_;
  }
  if (cb) cb(e);
}

result<attachment_id> mapping_allocator::attach(buffer_id id, int device, attach_mode mode, bool peer_capable) {
  auto r = raw_attach(id, device, mode, peer_capable);
  if (!r) return r;
  auto s = std::make_shared<view_state>();
  s->buffer = id;
  s->device = device;
  xbuf::mutex_lock lock(table_mutex_);
  views_[*r] = std::move(s);
  return r;
}

status mapping_allocator::detach(attachment_id id) {
  auto s = find(id, "detach");
  if (!s) return std::move(s).err();
  {
    xbuf::mutex_lock lock((*s)->mutex);
    if ((*s)->use_fence != 0) {
      return fail(errc::bad_state, "detach " + attachment_name(id) + ": a use is begun (end_use first)");
    }
  }
  if (auto st = raw_detach(id); !st) return st;
  {
    xbuf::mutex_lock lock((*s)->mutex);
    drop_view_locked(**s);
  }
  xbuf::mutex_lock lock(table_mutex_);
  views_.erase(id);
  return ok();
}

status mapping_allocator::show_export_locked(view_state& s, const exported_buffer& e) {
  std::shared_ptr<gpu::gpu_device> gpu;
  if (e.kind == memory_kind::device) {
    auto d = vram_device(s.device);
    if (!d) {
      ::close(e.fd);
      return std::move(d).err();
    }
    gpu = std::move(*d);
  }
  if (gpu) {
    // The window takes the fd.
    const exported_memory m{.fd = e.fd, .offset = e.offset, .size = e.size, .kind = e.kind};
    status st = ok();
    if (s.window) {
      st = s.window->show(m);
    } else if (auto w = gpu::device_window::open(gpu, m); w) {
      s.window = std::move(*w);
    } else {
      st = std::move(w).err();
    }
    if (!st) return st;
    s.view.reset();
    s.in_window = true;
    return ok();
  }
  status st = ok();
  if (s.view) {
    st = s.view->remap(e);
  } else if (auto v = file_view::map(e); v) {
    s.view = std::move(*v);
  } else {
    st = std::move(v).err();
  }
  ::close(e.fd);
  if (!st) return st;
  // Not VRAM now: the window lets its old allocation go, and stays
  // reserved for the way back.
  if (s.window) s.window->clear();
  s.in_window = false;
  return ok();
}

void mapping_allocator::drop_view_locked(view_state& s) {
  s.window.reset();
  s.in_window = false;
  s.view.reset();
  s.direct = nullptr;
  if (s.export_held) (void)release_export(s.buffer);  // fails only with the connection, which released it
  s.export_held = false;
}

status mapping_allocator::free(buffer_id id) {
  // The manager keeps a freed buffer alive while attachments hold it (an
  // importer's survive the owner's free): so this client's own go with
  // its free, views first. A use still begun is the caller's mistake.
  std::vector<std::pair<attachment_id, std::shared_ptr<view_state>>> ours;
  {
    xbuf::mutex_lock lock(table_mutex_);
    for (const auto& [at, s] : views_) {
      if (s->buffer == id) ours.emplace_back(at, s);
    }
  }
  for (auto& [at, s] : ours) {
    xbuf::mutex_lock lock(s->mutex);
    if (s->use_fence != 0) {
      return fail(errc::bad_state, "free buffer " + std::to_string(id) + ": a use of " + attachment_name(at) +
                                       " is begun (end_use first)");
    }
  }
  if (auto st = raw_free(id); !st) return st;
  for (auto& [at, s] : ours) {
    (void)raw_detach(at);  // fails only if the connection is gone, which dropped it anyway
    {
      xbuf::mutex_lock lock(s->mutex);
      drop_view_locked(*s);
    }
    xbuf::mutex_lock lock(table_mutex_);
    views_.erase(at);
  }
  return ok();
}

mapped_view mapping_allocator::view_of(const view_state& s) {
  void* data = s.direct;
  if (s.in_window && s.window) data = reinterpret_cast<void*>(static_cast<std::uintptr_t>(s.window->address()));
  else if (s.view) data = s.view->data();
  return mapped_view{.data = data,
                     .size = s.last.size,
                     .where = s.last.where,
                     .peer = s.last.peer,
                     .reason = s.last.reason,
                     .generation = s.generation};
}

result<mapped_view> mapping_allocator::map_locked(attachment_id id, view_state& s,
                                                  std::chrono::milliseconds timeout) {
  // Clear the flag first: a move_notify that lands after raw_map answered
  // sets it again and the next map remaps.
  s.stale = false;
  auto m = raw_map(id, timeout);
  if (!m) return std::move(m).err();
  s.mapped = true;
  const bool current = (s.view || s.in_window || s.direct != nullptr) && s.generation == m->generation;
  if (current) {
    s.last = std::move(*m);
    return view_of(s);
  }

  auto e = export_fd(s.buffer);
  if (!e) {
    if (e.code() != errc::unsupported || m->direct == nullptr) {
      return fail(e.code(), "map " + attachment_name(id) + ": " + e.err().message);
    }
    // Not a file (CUDA/HIP VRAM in this process): the manager's own
    // address, which the next move changes (the move callback says so).
    drop_view_locked(s);
    s.direct = m->direct;
    s.generation = m->generation;
    s.last = std::move(*m);
    return view_of(s);
  }
  const status st = show_export_locked(s, *e);
  if (!st) {
    (void)release_export(s.buffer);  // the new one, never shown
    return fail(st.code(), "map " + attachment_name(id) + ": " + st.err().message);
  }
  // The view shows the new export now: the one it showed before is done.
  if (s.export_held) (void)release_export(s.buffer);
  s.export_held = true;
  s.direct = nullptr;
  s.generation = m->generation;
  s.last = std::move(*m);
  return view_of(s);
}

result<mapped_view> mapping_allocator::map(attachment_id id, std::chrono::milliseconds timeout) {
  auto s = find(id, "map");
  if (!s) return std::move(s).err();
  xbuf::mutex_lock lock((*s)->mutex);
  return map_locked(id, **s, timeout);
}

status mapping_allocator::unmap(attachment_id id) {
  auto s = find(id, "unmap");
  if (!s) return std::move(s).err();
  xbuf::mutex_lock lock((*s)->mutex);
  if ((*s)->use_fence != 0) {
    return fail(errc::bad_state, "unmap " + attachment_name(id) + ": a use is begun (end_use first)");
  }
  if (auto st = raw_unmap(id); !st) return st;
  (*s)->mapped = false;
  drop_view_locked(**s);
  return ok();
}

result<mapped_view> mapping_allocator::begin_use(attachment_id id, fence_usage usage,
                                                 std::chrono::milliseconds timeout) {
  auto found = find(id, "begin_use");
  if (!found) return std::move(found).err();
  view_state& s = **found;
  xbuf::mutex_lock lock(s.mutex);
  if (s.use_fence != 0) {
    return fail(errc::bad_state, "begin_use " + attachment_name(id) + ": a use is already begun (end_use first)");
  }
  for (int round = 0; round < max_use_rounds; ++round) {
    // The view is current unless a move_notify came since it was made (or
    // there is none yet): then map first.
    const bool current = s.mapped && !s.stale && (s.view || s.in_window || s.direct != nullptr);
    auto v = current ? result<mapped_view>(view_of(s)) : map_locked(id, s, timeout);
    if (!v) return v;
    // The fence first, then the check: once it is on the buffer no new move
    // can start, so a generation that did not change since map means the
    // view is the buffer's memory for as long as the fence is unsignaled.
    auto f = add_fence(s.buffer, usage);
    if (!f) return fail(f.code(), "begin_use " + attachment_name(id) + ": " + f.err().message);
    auto again = raw_map(id, timeout);
    if (again && again->generation == s.generation) {
      s.use_fence = *f;
      return v;
    }
    s.stale = true;
    // A move got in between: let it go on, remap, try again.
    (void)signal_fence(*f, 0);
    if (!again) return fail(again.code(), "begin_use " + attachment_name(id) + ": " + again.err().message);
  }
  return fail(errc::busy, "begin_use " + attachment_name(id) + ": the buffer moved " +
                              std::to_string(max_use_rounds) + " times while the use was begun");
}

status mapping_allocator::end_use(attachment_id id, int error) {
  auto found = find(id, "end_use");
  if (!found) return std::move(found).err();
  view_state& s = **found;
  xbuf::mutex_lock lock(s.mutex);
  if (s.use_fence == 0) return fail(errc::bad_state, "end_use " + attachment_name(id) + ": no use begun");
  const fence_handle f = std::exchange(s.use_fence, 0);
  return signal_fence(f, error);
}

}  // namespace xbuf::client::detail
