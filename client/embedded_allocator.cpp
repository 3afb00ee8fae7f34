// SPDX-License-Identifier: MIT
//
// embedded_allocator.cpp - allocator.hpp's embedded mode: a backend and a
// memory manager of this process's own, one owner.
//
// Overview
//   The calls go straight to memory_manager. Fences this client adds are
//   software fences it signals itself, named by small numbers like the
//   daemon's; waits block the calling thread only. Views are made by
//   mapping_allocator the same way as in daemon mode (an export mapped
//   into a kept range), so a pointer survives a move in both modes; only
//   memory that is not a file (CUDA/HIP VRAM) is handed out as the
//   manager's own device address.
//
// Rules
//   - fences_mutex_ is a leaf (it also guards the pressure callback). Signaled fences are pruned once the table
//     has doubled since the last sweep (amortized O(1) per fence).
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/select.hpp"
#include "client/allocator.hpp"
#include "client/embedded_allocator.hpp"
#include "client/local_gpus.hpp"
#include "client/mapping_allocator.hpp"
#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"
#include "server/stats.hpp"

namespace xbuf::client {

namespace {

constexpr owner_id self = 1;

std::string fence_name(fence_handle f) { return "fence " + std::to_string(f); }

class embedded_allocator final : public detail::mapping_allocator {
 public:
  embedded_allocator(std::unique_ptr<backend> b, std::unique_ptr<memory_manager> mm,
                     std::shared_ptr<const gpu::gpu_runtime> local_runtime = nullptr)
      : backend_(std::move(b)), mm_(std::move(mm)), gpus_(std::move(local_runtime)),
        context_(fence::allocate_context()) {}
  ~embedded_allocator() override {
    drop_views();
    mm_.reset();  // before the backend it uses
  }

  std::string_view mode() const noexcept override { return "embedded"; }
  owner_id owner() const noexcept override { return self; }

  result<buffer_id> alloc(const alloc_options& o) override {
    alloc_request req;
    req.size = o.size;
    req.alignment = o.alignment;
    req.placements = o.placements;
    req.cpu_access = o.cpu_access;
    req.no_evict = o.no_evict;
    req.name = o.name;
    auto r = mm_->allocate(self, req);
    if (!r && r.code() == errc::out_of_memory && !o.placements.empty()) {
      pressure_callback cb;
      {
        xbuf::mutex_lock lock(fences_mutex_);
        cb = on_pressure_;
      }
      if (cb) cb(pressure_event{.where = o.placements.front(), .bytes = o.size});
    }
    return r;
  }
  void on_memory_pressure(pressure_callback cb) override {
    xbuf::mutex_lock lock(fences_mutex_);
    on_pressure_ = std::move(cb);
  }
  status share(buffer_id id, owner_id with) override { return mm_->share(self, id, with); }
  status advise(buffer_id id, eviction_hint hint) override { return mm_->advise(self, id, hint); }
  result<exported_buffer> export_fd(buffer_id id) override {
    auto e = mm_->export_fd(self, id);
    if (!e) return std::move(e).err();
    return exported_buffer{.fd = e->fd, .offset = e->offset, .size = e->size, .kind = e->kind};
  }
  status release_export(buffer_id id) override { return mm_->release_export(self, id); }

  result<imported> import_fd(int fd) override {
    auto r = mm_->import_fd(self, fd);
    if (!r) return std::move(r).err();
    return imported{.buffer = r->id, .size = r->size, .where = r->where};
  }

  result<fence_handle> add_fence(buffer_id id, fence_usage usage, std::chrono::milliseconds deadline) override {
    fence_ptr f;
    fence_handle h = 0;
    {
      xbuf::mutex_lock lock(fences_mutex_);
      h = ++last_fence_;
      f = fence::create(context_, h);
    }
    std::optional<fence_clock::time_point> until;
    if (deadline.count() > 0) until = fence_clock::now() + deadline;
    if (auto st = mm_->add_fence(self, id, f, usage, until); !st) return std::move(st).err();
    xbuf::mutex_lock lock(fences_mutex_);
    if (fences_.size() >= sweep_at_) {
      std::erase_if(fences_, [](const auto& kv) { return kv.second->is_signaled(); });
      sweep_at_ = std::max<std::size_t>(64, 2 * fences_.size());
    }
    fences_.emplace(h, std::move(f));
    return h;
  }
  status signal_fence(fence_handle h, int error) override {
    if (error > 0 || error < -4095) {
      return fail(errc::invalid_argument,
                  fence_name(h) + ": error " + std::to_string(error) + " is not 0 or a negative errno");
    }
    auto f = find_fence(h);
    if (!f) return std::move(f).err();
    return (*f)->signal(error);
  }
  result<int> wait(fence_handle h, std::chrono::milliseconds timeout) override {
    auto f = find_fence(h);
    if (!f) return std::move(f).err();
    if (auto st = (*f)->wait(timeout); !st) return std::move(st).err();
    return (*f)->error();
  }

  result<validate_summary> validate(std::span<const buffer_id> ids) override {
    auto r = mm_->validate(self, ids);
    if (!r) return std::move(r).err();
    return validate_summary{.promoted = static_cast<std::uint32_t>(r->promoted),
                            .deferred = static_cast<std::uint32_t>(r->deferred),
                            .in_place = static_cast<std::uint32_t>(r->in_place),
                            .no_room = static_cast<std::uint32_t>(r->no_room)};
  }
  result<cpu_view> cpu_begin(buffer_id id, bool write, std::chrono::milliseconds timeout) override {
    auto r = mm_->begin_cpu_access(self, id, write ? cpu_access_mode::write : cpu_access_mode::read, timeout);
    if (!r) return std::move(r).err();
    return cpu_view{.data = r->data, .size = r->size};
  }
  status cpu_end(buffer_id id) override { return mm_->end_cpu_access(self, id); }

  result<wire::stats_reply> stats() override { return server::collect_stats(*mm_); }
  result<std::size_t> poll_events(std::chrono::milliseconds) override { return std::size_t{0}; }

 private:
  result<fence_ptr> find_fence(fence_handle h) {
    xbuf::mutex_lock lock(fences_mutex_);
    auto it = fences_.find(h);
    if (it == fences_.end()) return fail(errc::not_found, fence_name(h) + ": unknown to this client");
    return it->second;
  }

  result<attachment_id> raw_attach(buffer_id id, int device, attach_mode mode, bool peer_capable) override {
    attach_request req;
    req.device = device;
    req.mode = mode;
    req.peer_capable = peer_capable;
    // Under the manager's locks: moved() only marks and calls back.
    req.move_notify = [this](const move_notice& n) {
      moved(move_event{.attachment = n.attachment, .buffer = n.buffer, .from = n.from, .to = n.to});
    };
    return mm_->attach(self, id, req);
  }
  status raw_detach(attachment_id id) override { return mm_->detach(self, id); }
  status raw_unmap(attachment_id id) override { return mm_->unmap(self, id); }
  status raw_free(buffer_id id) override { return mm_->free(self, id); }
  result<detail::raw_mapping> raw_map(attachment_id id, std::chrono::milliseconds timeout) override {
    auto r = mm_->map(self, id, nullptr, timeout);
    if (!r) return std::move(r).err();
    if (r->wait_for) {
      if (auto st = r->wait_for->wait(timeout); !st) return std::move(st).err();
      if (r->wait_for->error() != 0) {
        return fail(errc::device_lost, "attachment " + std::to_string(id) + ": the buffer's move failed (error " +
                                           std::to_string(r->wait_for->error()) + "): its contents are gone");
      }
    }
    detail::raw_mapping m{.where = r->where, .peer = r->peer, .reason = r->reason, .generation = r->generation};
    for (const auto& range : r->ranges) m.size += range.size;
    // One range is one address this process can use as it is.
    if (r->ranges.size() == 1) m.direct = reinterpret_cast<void*>(static_cast<std::uintptr_t>(r->ranges[0].address));
    return m;
  }

  result<std::shared_ptr<gpu::gpu_device>> vram_device(int device) override {
    return gpus_.for_backend(backend_->name(), device);
  }

  std::unique_ptr<backend> backend_;
  std::unique_ptr<memory_manager> mm_;
  detail::local_gpus gpus_;
  const std::uint64_t context_;
  xbuf::mutex fences_mutex_;
  std::map<fence_handle, fence_ptr> fences_ XBUF_GUARDED_BY(fences_mutex_);
  fence_handle last_fence_ XBUF_GUARDED_BY(fences_mutex_) = 0;
  std::size_t sweep_at_ XBUF_GUARDED_BY(fences_mutex_) = 64;
  pressure_callback on_pressure_ XBUF_GUARDED_BY(fences_mutex_);
};

}  // namespace

result<std::unique_ptr<allocator>> open_embedded(const embedded_options& o) {
  auto choice = parse_backend_choice(o.backend);
  if (!choice) return std::move(choice).err();
  backend_selection_config bcfg;
  bcfg.choice = *choice;
  bcfg.sim = make_sim_config(o.sim_devices, static_cast<std::size_t>(o.sim_vram));
  auto selected = select_backend(bcfg);
  if (!selected) return std::move(selected).err();
  manager_config mc;
  mc.device_backend = selected->chosen.get();
  mc.pinned_capacity = o.pinned;
  mc.pinned_limit = o.pinned;
  mc.pageable_capacity = o.pageable;
  mc.promote_interval = o.promote_interval;
  return open_embedded_over(std::move(selected->chosen), std::move(mc), nullptr);
}

result<std::unique_ptr<allocator>> open_embedded_over(std::unique_ptr<backend> b, manager_config mc,
                                                     std::shared_ptr<const gpu::gpu_runtime> local_runtime) {
  mc.device_backend = b.get();
  auto mm = memory_manager::create(std::move(mc));
  if (!mm) return std::move(mm).err();
  return std::unique_ptr<allocator>(
      std::make_unique<embedded_allocator>(std::move(b), std::move(*mm), std::move(local_runtime)));
}

}  // namespace xbuf::client
