// SPDX-License-Identifier: MIT
//
// memory_manager.cpp - creation, look-ups, and the calls on a buffer's
// ownership: free, share, export, fences, quotas, an owner's departure.
//
// The manager is cut by concern (TTM keeps each in its own file):
//   memory_manager.cpp  this file
//   placement.cpp       domains, reachability, finding room, allocate()
//   eviction.cpp        choosing victims and starting their moves
//   migration.cpp       moving one buffer, validate()
//   attachments.cpp     attach, detach, map, unmap, destroy
//   cpu_access.cpp      begin/end_cpu_access
//   stats.cpp           stats(), info(), buffers()
//   accounting.cpp      owners' bytes, quotas, pins (a class of its own)
//
// Implementation notes
//   - A public call on one buffer runs: look the buffer up under mutex_, drop
//     mutex_, take the buffer's reservation lock, retake mutex_, check the
//     buffer is still alive, work. That keeps the lock order (reservation ->
//     manager mutex) without holding mutex_ while blocking on a buffer lock.
#include "allocator/memory_manager.hpp"

#include <algorithm>
#include <cerrno>

#include "allocator/detail/manager_names.hpp"
#include "allocator/block_heap.hpp"
#include "allocator/host_heap.hpp"
#include "allocator/vram_heap.hpp"
#include "core/fence_join.hpp"
#include "core/guarded.hpp"

namespace xbuf {

using detail::buffer_name;
using detail::gone;
using detail::unknown_attachment;
using detail::unknown_buffer;

namespace {

status check_config(const manager_config& config, std::size_t devices) {
  if (config.device_backend == nullptr) {
    return fail(errc::invalid_argument, "memory manager: no device backend given");
  }
  if (!config.vram_capacity.empty() && config.vram_capacity.size() != devices) {
    return fail(errc::invalid_argument,
                "memory manager: vram_capacity has " + std::to_string(config.vram_capacity.size()) +
                    " entries for " + std::to_string(devices) + " devices");
  }
  if (config.pinned_capacity == 0 || config.pageable_capacity == 0) {
    return fail(errc::invalid_argument, "memory manager: host capacities must not be 0");
  }
  if (config.move_retries < 0) {
    return fail(errc::invalid_argument, "memory manager: move_retries must be >= 0");
  }
  return ok();
}

// The backend's own answer, for a manager given no topology-based policy.
peer_policy_fn runtime_peer_policy(backend* be) {
  return [be](int importer, int exporter) {
    auto r = be->can_access_peer(importer, exporter);
    if (!r) return peer_decision{false, r.err().message};
    if (!r->has_value()) {
      return peer_decision{false, "no topology verdict and the backend cannot tell"};
    }
    return peer_decision{**r, **r ? std::string(be->name()) + " runtime allows peer access"
                                  : std::string(be->name()) + " runtime vetoes peer access"};
  };
}

}  // namespace

// ------------------------------------------------------------------ creation

memory_manager::memory_manager(manager_config config)
    : config_(std::move(config)), backend_(*config_.device_backend),
      accounts_(owner_limits{.pinned_limit = config_.pinned_limit,
                             .domain_quota = config_.domain_quota,
                             .max_buffers = config_.max_buffers_per_owner}) {}

result<std::unique_ptr<memory_manager>> memory_manager::create(manager_config config) {
  const auto devices = config.device_backend ? config.device_backend->devices()
                                             : std::vector<device_info>{};
  if (auto s = check_config(config, devices.size()); !s) return std::move(s).err();
  if (!config.peer_policy) config.peer_policy = runtime_peer_policy(config.device_backend);
  std::unique_ptr<memory_manager> m(new memory_manager(std::move(config)));
  const auto& cfg = m->config_;
  mutex_lock lock(m->mutex_);  // nobody else sees it yet; the analysis wants it
  for (std::size_t d = 0; d < devices.size(); ++d) {
    std::uint64_t cap = cfg.vram_capacity.empty() ? 0 : cfg.vram_capacity[d];
    if (cap == 0) cap = devices[d].memory_bytes;
    // One buffer per fd (DESIGN.md, Tenancy): where device memory exports
    // per allocation but an arena's part cannot get an fd of its own (CUDA
    // VMM), each buffer is a device allocation of its own; elsewhere one
    // arena, sub-allocated (sim: exports detach their range; no export:
    // nothing leaves the daemon).
    const auto& caps = m->backend_.caps();
    if (caps.export_fd && !caps.export_detaches_ranges) {
      m->heaps_.push_back(block_heap::create(m->backend_, placement::vram(static_cast<int>(d)), cap));
      continue;
    }
    cap -= cap % cfg.min_block;  // the buddy needs whole chunks
    auto h = vram_heap::create(m->backend_, static_cast<int>(d), cap, cfg.min_block);
    if (!h) return h.err().prefixed("memory manager");
    m->heaps_.push_back(std::move(*h));
  }
  m->heaps_.push_back(host_heap::create(m->backend_, true, cfg.pinned_capacity));
  // Several NUMA nodes: a pageable heap each, the capacity split between
  // them (what the operator gave is the total). One node, or none known:
  // one heap, unbound, as the kernel's default policy places it.
  auto nodes = m->backend_.host_numa_nodes();
  if (nodes.size() < 2) nodes = {-1};
  const std::uint64_t share = std::max<std::uint64_t>(cfg.pageable_capacity / nodes.size(), 1);
  for (int node : nodes) {
    m->pageable_domains_.push_back(static_cast<int>(m->heaps_.size()));
    m->heaps_.push_back(host_heap::create(m->backend_, false, share, node));
  }
  return m;
}

memory_manager::~memory_manager() {
  // Moves and delayed frees hold memory blocks and run copies: let them end
  // before the heaps (and the arenas they point into) go.
  std::vector<fence_ptr> pending;
  {
    mutex_lock lock(mutex_);
    buffers_.for_each([&](buffer_id, const std::shared_ptr<buffer>& buf) {
      auto fs = buf->resv.fences(fence_usage::bookkeep);
      pending.insert(pending.end(), fs.begin(), fs.end());
    });
    for (auto& h : heaps_) {
      auto fs = h->pending_fences();
      pending.insert(pending.end(), fs.begin(), fs.end());
    }
  }
  (void)wait_all(pending);
  mutex_lock lock(mutex_);
  reap_locked();
}

// -------------------------------------------------------- the API boundary

namespace {
constexpr std::string_view who = "memory manager";
}  // namespace

result<buffer_id> memory_manager::allocate(owner_id owner, const alloc_request& req) {
  return guarded(who, "allocate", [&] { return allocate_unguarded(owner, req); });
}
status memory_manager::free(owner_id owner, buffer_id id) {
  return guarded(who, "free", [&] { return free_unguarded(owner, id); });
}
status memory_manager::share(owner_id owner, buffer_id id, owner_id with) {
  return guarded(who, "share", [&] { return share_unguarded(owner, id, with); });
}
result<attachment_id> memory_manager::attach(owner_id owner, buffer_id id, const attach_request& req,
                                             const cancel_token* cancel) {
  return guarded(who, "attach", [&] { return attach_unguarded(owner, id, req, cancel); });
}
status memory_manager::detach(owner_id owner, attachment_id id) {
  return guarded(who, "detach", [&] { return detach_unguarded(owner, id); });
}
result<mapping> memory_manager::map(owner_id owner, attachment_id id, const cancel_token* cancel,
                                    fence_clock::duration timeout) {
  return guarded(who, "map", [&] { return map_unguarded(owner, id, cancel, timeout); });
}
status memory_manager::unmap(owner_id owner, attachment_id id) {
  return guarded(who, "unmap", [&] { return unmap_unguarded(owner, id); });
}
status memory_manager::add_fence(owner_id owner, buffer_id id, fence_ptr f, fence_usage usage,
                                 std::optional<fence_clock::time_point> deadline) {
  return guarded(who, "add_fence",
                 [&] { return add_fence_unguarded(owner, id, std::move(f), usage, deadline); });
}
result<validate_report> memory_manager::validate(owner_id owner, std::span<const buffer_id> ids,
                                                 const cancel_token* cancel,
                                                 fence_clock::duration timeout) {
  return guarded(who, "validate", [&] { return validate_unguarded(owner, ids, cancel, timeout); });
}
result<cpu_mapping> memory_manager::begin_cpu_access(owner_id owner, buffer_id id,
                                                     cpu_access_mode mode,
                                                     fence_clock::duration timeout,
                                                     const cancel_token* cancel) {
  return guarded(who, "begin_cpu_access",
                 [&] { return begin_cpu_access_unguarded(owner, id, mode, timeout, cancel); });
}
status memory_manager::end_cpu_access(owner_id owner, buffer_id id) {
  return guarded(who, "end_cpu_access", [&] { return end_cpu_access_unguarded(owner, id); });
}
result<pending_cpu_access> memory_manager::start_cpu_access(owner_id owner, buffer_id id,
                                                            cpu_access_mode mode,
                                                            fence_clock::duration timeout,
                                                            const cancel_token* cancel) {
  return guarded(who, "start_cpu_access",
                 [&] { return start_cpu_access_unguarded(owner, id, mode, timeout, cancel); });
}
result<exported_memory> memory_manager::export_fd(owner_id owner, buffer_id id,
                                                  fence_clock::duration timeout) {
  return guarded(who, "export", [&] { return export_fd_unguarded(owner, id, timeout); });
}
result<imported_buffer> memory_manager::import_fd(owner_id importer, int fd) {
  return guarded(who, "import", [&] { return import_fd_unguarded(importer, fd); });
}
result<fence_ptr> memory_manager::pending_moves(owner_id owner, buffer_id id) {
  return guarded(who, "pending_moves", [&]() -> result<fence_ptr> {
    mutex_lock lock(mutex_);
    auto buf = find_locked(owner, id);
    if (!buf) return detail::unknown_buffer(owner, id);
    return join(buf->resv.fences(fence_usage::kernel));
  });
}
status memory_manager::release_export(owner_id receiver, buffer_id id) {
  return guarded(who, "release", [&] { return release_export_unguarded(receiver, id); });
}
result<buffer_info> memory_manager::info(owner_id owner, buffer_id id) const {
  return guarded(who, "info", [&] { return info_unguarded(owner, id); });
}

// ------------------------------------------------------------------- lookups

std::shared_ptr<buffer> memory_manager::find_locked(owner_id owner, buffer_id id) const {
  const auto* found = buffers_.find(id);
  if (found == nullptr) return nullptr;
  const auto& buf = *found;
  if (buf->owner != owner && !buf->shared_with.contains(owner)) return nullptr;
  return buf;
}

std::shared_ptr<attachment> memory_manager::find_attachment_locked(
    owner_id owner, attachment_id id, std::shared_ptr<buffer>* buf) const {
  auto it = attachment_index_.find(id);
  if (it == attachment_index_.end()) return nullptr;
  auto att = it->second.lock();
  if (!att || att->owner != owner) return nullptr;
  const auto* b = buffers_.find(attachment_buffer_.at(id));
  if (b == nullptr) return nullptr;
  *buf = *b;
  return att;
}

result<memory_manager::locked_buffer> memory_manager::lock_buffer(owner_id owner, buffer_id id) {
  std::shared_ptr<buffer> buf;
  {
    mutex_lock lock(mutex_);
    buf = find_locked(owner, id);
    if (!buf) return unknown_buffer(owner, id);
  }
  std::unique_lock resv(buf->resv.mutex());
  buf->resv.assert_held();
  // destroyed is written under both locks, so the reservation lock suffices.
  if (buf->destroyed) return gone(id);
  return locked_buffer{std::move(buf), std::move(resv)};
}

result<memory_manager::locked_attachment> memory_manager::lock_attachment(owner_id owner,
                                                                          attachment_id id) {
  std::shared_ptr<buffer> buf;
  std::shared_ptr<attachment> att;
  {
    mutex_lock lock(mutex_);
    att = find_attachment_locked(owner, id, &buf);
    if (!att) return unknown_attachment(owner, id);
  }
  std::unique_lock resv(buf->resv.mutex());
  buf->resv.assert_held();
  // Detached while we waited for the lock? The list is guarded by it.
  if (std::find(buf->attachments.begin(), buf->attachments.end(), att) == buf->attachments.end()) {
    return unknown_attachment(owner, id);
  }
  return locked_attachment{std::move(buf), std::move(att), std::move(resv)};
}

// ----------------------------------------------------------------- ownership

status memory_manager::free_unguarded(owner_id owner, buffer_id id) {
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  buf->resv.assert_held();
  mutex_lock lock(mutex_);
  if (buf->owner != owner) return unknown_buffer(owner, id);  // shared with it, not its own
  if (buf->owner_released) {
    return fail(errc::bad_state, buffer_name(id) + ": already freed (still attached by " +
                                     std::to_string(buf->attachments.size()) + " importers)");
  }
  buf->owner_released = true;
  accounts_.owner_freed(*buf);
  (void)accounts_.end_all_cpu_access(*buf);
  destroy_if_unreachable_locked(*buf);
  return ok();
}

status memory_manager::share_unguarded(owner_id owner, buffer_id id, owner_id with) {
  mutex_lock lock(mutex_);
  auto buf = find_locked(owner, id);
  if (!buf || buf->owner != owner) return unknown_buffer(owner, id);
  if (buf->owner_released) return fail(errc::bad_state, buffer_name(id) + ": already freed");
  buf->shared_with.insert(with);
  return ok();
}

result<exported_memory> memory_manager::export_fd_unguarded(owner_id owner, buffer_id id,
                                                            fence_clock::duration timeout) {
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  buf->resv.assert_held();
  // One buffer per fd (DESIGN.md, Tenancy): a buffer carved from a shared
  // block is exported only where the backend gives its range pages of
  // their own; else the fd would reach every other tenant's buffer there.
  if (buf->backing.shares_block && !detaches_ranges(backend_.caps(), buf->backing.span.block->kind)) {
    mutex_lock lock(mutex_);
    return fail(errc::unsupported, "export " + buffer_name(id) + ": it lives in " + at(buf->domain).name() +
                                       ", carved from an arena the " + std::string(backend_.name()) +
                                       " backend cannot give an fd of its own (the fd would reach other "
                                       "buffers); allocate it in host memory to export it");
  }
  // Whoever maps the fd uses the bytes at once, with no fence to wait for:
  // a pending clear or move (KERNEL fences) must be done first. The lock
  // holds new moves back; the wait needs no lock of ours.
  if (auto s = buf->resv.wait(fence_usage::kernel, timeout); !s) {
    return std::move(s).err().prefixed("export " + buffer_name(id) + ": waiting for its move or clear");
  }
  mutex_lock lock(mutex_);
  auto e = backend_.export_fd(buf->backing.span);
  if (!e) return std::move(e).err().prefixed("export " + buffer_name(id));
  record_export_locked(*buf, *e);
  ++buf->export_holds[owner];
  return e;
}

status memory_manager::add_fence_unguarded(owner_id owner, buffer_id id, fence_ptr f, fence_usage usage,
                                 std::optional<fence_clock::time_point> deadline) {
  if (!f) return fail(errc::invalid_argument, "add_fence " + buffer_name(id) + ": null fence");
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  buf->resv.assert_held();
  {
    mutex_lock lock(mutex_);
    auto& list = owner_fences_[owner];
    std::erase_if(list, [](const std::weak_ptr<fence>& w) {
      auto f2 = w.lock();
      return !f2 || f2->is_signaled();
    });
    list.push_back(f);
  }
  if (auto r = buf->resv.reserve_fences(1); !r) return std::move(r).err().prefixed(buffer_name(id));
  buf->resv.add_fence(f, usage);
  if (deadline) watchdog_.watch(f, *deadline);
  return ok();
}

void memory_manager::set_quota(owner_id owner, std::uint64_t bytes) {
  mutex_lock lock(mutex_);
  accounts_.set_quota(owner, bytes);
}

std::size_t memory_manager::release_owner(owner_id owner) {
  std::vector<attachment_id> atts;
  std::vector<buffer_id> bufs;
  std::vector<fence_ptr> fences;
  std::vector<std::pair<buffer_id, int>> accesses;
  std::vector<std::pair<buffer_id, std::uint32_t>> held;  // its unreleased exports
  {
    mutex_lock lock(mutex_);
    for (auto& [id, w] : attachment_index_) {
      if (auto a = w.lock(); a && a->owner == owner) atts.push_back(id);
    }
    buffers_.for_each([&](buffer_id id, const std::shared_ptr<buffer>& b) {
      if (b->owner == owner && !b->owner_released) bufs.push_back(id);
      if (auto h = b->export_holds.find(owner); h != b->export_holds.end()) {
        held.emplace_back(id, h->second);
      }
    });
    if (auto it = owner_fences_.find(owner); it != owner_fences_.end()) {
      for (auto& w : it->second) {
        if (auto f = w.lock()) fences.push_back(std::move(f));
      }
      owner_fences_.erase(it);
    }
    accesses = accounts_.forget_owner(owner);
  }
  // Its fences will never be signaled by it now: nobody may wait forever.
  for (auto& f : fences) (void)f->signal(-ECONNRESET);
  for (auto id : atts) (void)detach(owner, id);
  // Its CPU accesses end with it. pins is a [both] field: each buffer's
  // reservation is taken for it, as for any other pin change.
  for (auto [id, count] : accesses) {
    auto locked = lock_buffer(owner, id);
    if (!locked) continue;  // freed meanwhile: free() ended its accesses
    mutex_lock lock(mutex_);
    accounts_.end_departed_cpu_access(*locked->buf, count);
  }
  std::size_t freed = 0;
  for (auto id : bufs) {
    if (free(owner, id)) ++freed;
  }
  // Its fds are closed with its process or connection (what it passed on
  // is its receivers' to import): the holds go after its own buffers are
  // freed, so each buffer is destroyed once, by its last hold.
  for (auto [id, count] : held) {
    for (std::uint32_t i = 0; i < count; ++i) (void)release_export(owner, id);
  }
  return freed;
}

}  // namespace xbuf
