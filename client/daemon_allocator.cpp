// SPDX-License-Identifier: MIT
//
// daemon_allocator.cpp - allocator.hpp's daemon mode: xbufd through one
// remote_client connection.
//
// Overview
//   Every call takes the connection's lock and makes one request (two for
//   map when a move is running: map, then wait for its fence). Events that
//   arrive while a call reads its reply are delivered there: move_notify
//   marks the attachment's view stale (mapping_allocator::moved) and runs
//   the user's callback. The daemon never hands out its own addresses, so
//   every view is an mmap of the buffer's export (file_view); memory the
//   daemon cannot export (CUDA/HIP VRAM) is refused by map with the
//   daemon's reason.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "client/allocator.hpp"
#include "client/file_view.hpp"
#include "client/local_gpus.hpp"
#include "client/mapping_allocator.hpp"
#include "client/remote_client.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf::client {

namespace {

std::uint32_t wire_ms(std::chrono::milliseconds d) {
  return static_cast<std::uint32_t>(std::clamp<std::chrono::milliseconds::rep>(d.count(), 0, 0xffffffff));
}

class daemon_allocator final : public detail::mapping_allocator {
 public:
  explicit daemon_allocator(remote_client rc) : rc_(std::move(rc)) {
    xbuf::mutex_lock lock(mutex_);
    rc_.on_move_notify([this](const wire::move_notify_event& e) {
      moved(move_event{.attachment = e.attachment, .buffer = e.buffer, .from = e.from, .to = e.to});
    });
    rc_.on_memory_pressure([this](const wire::memory_pressure_event& e) {
      pressure_callback cb;
      {
        xbuf::mutex_lock guard(pressure_mutex_);
        cb = on_pressure_;
      }
      if (cb) cb(pressure_event{.where = e.where, .bytes = e.bytes});
    });
  }
  ~daemon_allocator() override {
    drop_views();
    xbuf::mutex_lock lock(mutex_);
    cpu_views_.clear();
  }

  std::string_view mode() const noexcept override { return "daemon"; }
  owner_id owner() const noexcept override { return owner_; }

  result<buffer_id> alloc(const alloc_options& o) override {
    std::uint32_t flags = 0;
    if (o.cpu_access) flags |= wire::alloc_flag_cpu_access;
    if (o.no_evict) flags |= wire::alloc_flag_no_evict;
    xbuf::mutex_lock lock(mutex_);
    return rc_.alloc(o.size, o.placements, o.name, flags, o.alignment);
  }
  status share(buffer_id id, owner_id with) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.share(id, with);
  }
  status advise(buffer_id id, eviction_hint hint) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.advise(id, hint);
  }
  result<exported_buffer> export_fd(buffer_id id) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.export_fd(id);
  }
  status release_export(buffer_id id) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.release_export(id);
  }
  result<imported> import_fd(int fd) override {
    xbuf::mutex_lock lock(mutex_);
    auto r = rc_.import_fd(fd);
    if (!r) return std::move(r).err();
    return imported{.buffer = r->buffer, .size = r->size, .where = r->where};
  }
  result<fence_handle> add_fence(buffer_id id, fence_usage usage, std::chrono::milliseconds deadline) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.add_client_fence(id, usage, wire_ms(deadline));
  }
  status signal_fence(fence_handle f, int error) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.signal_client_fence(f, error);
  }
  result<int> wait(fence_handle f, std::chrono::milliseconds timeout) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.wait(f, wire_ms(timeout));
  }
  result<validate_summary> validate(std::span<const buffer_id> ids) override {
    xbuf::mutex_lock lock(mutex_);
    auto r = rc_.validate(std::vector<buffer_id>(ids.begin(), ids.end()));
    if (!r) return std::move(r).err();
    return validate_summary{.promoted = r->promoted, .deferred = r->deferred, .in_place = r->in_place,
                            .no_room = r->no_room};
  }

  // The access pins the buffer in host memory for its length; the bytes
  // come through its export, mapped until cpu_end.
  result<cpu_view> cpu_begin(buffer_id id, bool write, std::chrono::milliseconds timeout) override {
    xbuf::mutex_lock lock(mutex_);
    if (cpu_views_.contains(id)) {
      return fail(errc::bad_state, "cpu_begin buffer " + std::to_string(id) + ": an access is already begun");
    }
    auto size = rc_.cpu_begin(id, write, std::max<std::uint32_t>(wire_ms(timeout), 1));
    if (!size) return std::move(size).err();
    auto e = rc_.export_fd(id);
    if (!e) {
      (void)rc_.cpu_end(id);
      return std::move(e).err();
    }
    auto v = file_view::map(*e);
    ::close(e->fd);
    if (!v) {
      (void)rc_.release_export(id);
      (void)rc_.cpu_end(id);
      return std::move(v).err();
    }
    cpu_view out{.data = v->data(), .size = v->size()};
    cpu_views_.emplace(id, std::move(*v));
    return out;
  }
  status cpu_end(buffer_id id) override {
    xbuf::mutex_lock lock(mutex_);
    auto st = rc_.cpu_end(id);
    if (st && cpu_views_.erase(id) != 0) (void)rc_.release_export(id);  // the view's export
    return st;
  }

  result<wire::stats_reply> stats() override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.stats();
  }
  result<std::size_t> poll_events(std::chrono::milliseconds timeout) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.poll_events(static_cast<int>(std::min<std::uint32_t>(wire_ms(timeout), 0x7fffffff)));
  }

  void on_memory_pressure(pressure_callback cb) override {
    xbuf::mutex_lock lock(pressure_mutex_);
    on_pressure_ = std::move(cb);
  }

  void set_owner(owner_id o) { owner_ = o; }

 private:
  result<attachment_id> raw_attach(buffer_id id, int device, attach_mode mode, bool peer_capable) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.attach(id, device, mode, peer_capable);
  }
  status raw_detach(attachment_id id) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.detach(id);
  }
  status raw_unmap(attachment_id id) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.unmap(id);
  }
  status raw_free(buffer_id id) override {
    xbuf::mutex_lock lock(mutex_);
    return rc_.free(id);
  }
  result<detail::raw_mapping> raw_map(attachment_id id, std::chrono::milliseconds timeout) override {
    xbuf::mutex_lock lock(mutex_);
    auto r = rc_.map(id);
    if (!r) return std::move(r).err();
    if (r->wait_fence != 0) {
      auto w = rc_.wait(r->wait_fence, std::max<std::uint32_t>(wire_ms(timeout), 1));
      if (!w) return std::move(w).err();
      if (*w != 0) {
        return fail(errc::device_lost, "attachment " + std::to_string(id) + ": the buffer's move failed (error " +
                                           std::to_string(*w) + "): its contents are gone");
      }
    }
    detail::raw_mapping m{.where = r->where, .peer = r->peer, .reason = r->reason, .generation = r->generation};
    for (const auto& range : r->ranges) m.size += range.size;
    return m;
  }

  result<std::shared_ptr<gpu::gpu_device>> vram_device(int device) override {
    std::string backend;
    {
      xbuf::mutex_lock lock(mutex_);
      if (!daemon_backend_) {  // asked once: a daemon does not change its backend
        auto s = rc_.stats();
        if (!s) return std::move(s).err().prefixed("which backend xbufd runs");
        daemon_backend_ = s->backend;
      }
      backend = *daemon_backend_;
    }
    return gpus_.for_backend(backend, device);
  }

  xbuf::mutex mutex_;
  remote_client rc_ XBUF_GUARDED_BY(mutex_);
  std::optional<std::string> daemon_backend_ XBUF_GUARDED_BY(mutex_);
  detail::local_gpus gpus_;
  std::map<buffer_id, file_view> cpu_views_ XBUF_GUARDED_BY(mutex_);
  owner_id owner_ = 0;
  xbuf::mutex pressure_mutex_;  // a leaf: taken inside calls that hold mutex_
  pressure_callback on_pressure_ XBUF_GUARDED_BY(pressure_mutex_);
};

}  // namespace

result<std::unique_ptr<allocator>> connect_daemon(const std::string& socket_path, const std::string& client_name,
                                                  std::optional<std::uint32_t> server_uid) {
  const char* env = std::getenv("XBUF_SOCKET");
  const std::string path =
      !socket_path.empty() ? socket_path : (env != nullptr && *env != '\0' ? std::string(env) : wire::default_socket_path());
  auto rc = remote_client::connect(path, client_name, connect_options{.server_uid = server_uid});
  if (!rc) return std::move(rc).err();
  const owner_id who = rc->owner();
  auto a = std::make_unique<daemon_allocator>(std::move(*rc));
  a->set_owner(who);
  return std::unique_ptr<allocator>(std::move(a));
}

}  // namespace xbuf::client
