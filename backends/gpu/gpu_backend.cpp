// SPDX-License-Identifier: MIT
#include "backends/gpu/gpu_backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backends/detail/memfd_block.hpp"
#include "backends/gpu/deferred_submitter.hpp"
#include "backends/gpu/event_fence.hpp"
#include "backends/gpu/event_poller.hpp"
#include "backends/gpu/gpu_device.hpp"
#include "backends/gpu/gpu_memory.hpp"
#include "backends/gpu/numa_sysfs.hpp"
#include "backends/gpu/runtime_error.hpp"
#include "backends/gpu/runtime_event.hpp"

namespace xbuf::gpu {

namespace {

using device_list = std::vector<std::shared_ptr<gpu_device>>;

device_address address_of(const memory_span& s) { return s.block->device_ptr + s.offset; }

// What a stream does for copy() or fill(): one operation, queued the same
// way (now, or later by the deferred submitter) and fenced the same way.
struct stream_op {
  memory_span dst;
  memory_span src;          // copies only
  bool fill = false;        // set dst to `value` instead of copying src
  std::uint8_t value = 0;
  std::string_view what() const noexcept { return fill ? "fill" : "copy"; }
};

// wait_for, sorted (see gpu_backend.hpp).
struct sorted_waits {
  int failed = 0;                // the first error among signaled fences
  std::vector<fence_ptr> gpu;    // this backend's enqueued event fences
  std::vector<fence_ptr> other;  // everything else still unsignaled
};

class gpu_backend final : public backend {
 public:
  gpu_backend(backend_caps caps, std::vector<device_info> infos, device_list devices)
      : backend(caps, std::move(infos)),
        runtime_(devices.front()->runtime),
        runtime_caps_(runtime_->caps()),
        fence_kind_(std::string(runtime_caps_.name) + "-event"),
        devices_(std::move(devices)),
        poller_(std::make_shared<event_poller>("xbuf-" + std::string(runtime_caps_.name) + "-poll")),
        submitter_(std::make_unique<deferred_submitter>("xbuf-" + std::string(runtime_caps_.name) + "-submit")) {}

  ~gpu_backend() override {
    // Order matters: jobs that were ready run (their copies reach the
    // streams), waiting ones are cancelled; then the streams drain so every
    // attached event completes; then the poller's last pass signals them.
    submitter_.reset();
    for (const auto& dev : devices_) {
      device_scope scope(*dev);
      if (scope.ok()) dev->runtime->stream_synchronize(dev->stream);
    }
    poller_.reset();
  }

 private:
  std::string_view do_name() const noexcept override { return runtime_caps_.name; }

  result<memory_block_ptr> do_allocate_device(int device, std::size_t bytes) override {
    return gpu::allocate_device(devices_[static_cast<std::size_t>(device)], bytes);
  }

  result<memory_block_ptr> do_allocate_host(std::size_t bytes, bool pinned, int numa_node) override {
    return gpu::allocate_host(devices_.front(), bytes, pinned, numa_node);
  }

  std::vector<int> do_host_numa_nodes() const override { return online_numa_nodes(); }

  result<exported_memory> do_export_fd(const memory_span& span) override {
    if (const auto* d = own_device_block(span.block)) return export_device(*d, span);
    if (const auto* h = own_host_block(span.block)) {
      // Pageable host memory is no runtime's: a part of a block gets pages
      // of its own. Pinned memory is registered as a whole block.
      if (h->kind == memory_kind::host_pageable) return detail::export_span(*h, span, title() + " backend");
      return detail::export_block(*h, span, title() + " backend");
    }
    return fail(errc::unsupported, title() + " backend: cannot export a block another backend made");
  }

  bool do_release_range(const memory_span& span) noexcept override {
    const auto* h = own_host_block(span.block);
    return h == nullptr || h->kind != memory_kind::host_pageable || detail::release_range(*h, span);
  }

  result<memory_block_ptr> do_import_fd(const exported_memory& exported, int device) override {
    if (exported.kind != memory_kind::device) return gpu::import_host(devices_.front(), exported);
    if (device < 0 || static_cast<std::size_t>(device) >= devices_.size()) {
      if (exported.fd >= 0) ::close(exported.fd);
      return fail(errc::no_device,
                  title() + " import: device memory needs a local device, got " + std::to_string(device));
    }
    return gpu::import_device(devices_[static_cast<std::size_t>(device)], exported);
  }

  std::optional<bool> do_can_access_peer(int device, int peer) override {
    if (device == peer) return true;
    const auto& a = *devices_[static_cast<std::size_t>(device)];
    auto can = a.runtime->can_access_peer(a.ref, devices_[static_cast<std::size_t>(peer)]->ref);
    if (!can) return std::nullopt;
    return *can;
  }

  // Link counts (NVLink, xGMI) are not in either runtime API: NVLink needs
  // NVML, and hipExtGetLinkTypeAndHopCount gives a type and hop count, not
  // links. Unknown.
  std::optional<int> do_link_count(int, int) override { return std::nullopt; }

  result<fence_ptr> do_copy(const memory_span& dst, const memory_span& src,
                            std::span<const fence_ptr> wait_for) override;
  result<fence_ptr> do_fill(const memory_span& dst, std::uint8_t value,
                            std::span<const fence_ptr> wait_for) override;
  // copy() and fill() after their checks: on `dev`'s stream, after wait_for.
  result<fence_ptr> submit(const std::shared_ptr<gpu_device>& dev, stream_op op,
                           std::span<const fence_ptr> wait_for);
  sorted_waits sort_waits(std::span<const fence_ptr> wait_for) const;
  result<fence_ptr> submit_now(gpu_device& dev, const stream_op& op,
                               const std::vector<fence_ptr>& gpu_waits);
  fence_ptr submit_later(const std::shared_ptr<gpu_device>& dev, stream_op op, sorted_waits waits);
  status enqueue(gpu_device& dev, const stream_op& op, const std::vector<fence_ptr>& gpu_waits,
                 event_fence& f) XBUF_REQUIRES(dev.submit_mutex);
  status enqueue_op(gpu_device& dev, const stream_op& op);

  std::string title() const { return std::string(runtime_caps_.title); }

  // The block behind p if this backend made or imported it, else nullptr.
  const device_block* own_device_block(const memory_block_ptr& p) const noexcept {
    const auto* b = dynamic_cast<const device_block*>(p.get());
    if (b == nullptr || b->device < 0 || static_cast<std::size_t>(b->device) >= devices_.size()) return nullptr;
    return b->owner == devices_[static_cast<std::size_t>(b->device)] ? b : nullptr;
  }
  const detail::memfd_block* own_host_block(const memory_block_ptr& p) const noexcept {
    return detail::owned_block(p, devices_.front().get());
  }

  // The stream a copy runs on: the device side of it (source first), or
  // device 0 for host-to-host.
  const std::shared_ptr<gpu_device>& stream_owner(const memory_block& dst, const memory_block& src) const {
    if (src.kind == memory_kind::device) return devices_[static_cast<std::size_t>(src.device)];
    if (dst.kind == memory_kind::device) return devices_[static_cast<std::size_t>(dst.device)];
    return devices_.front();
  }

  const std::shared_ptr<const gpu_runtime> runtime_;
  const runtime_caps& runtime_caps_;  // runtime_'s, constant
  const std::string fence_kind_;
  device_list devices_;
  std::shared_ptr<event_poller> poller_;
  std::unique_ptr<deferred_submitter> submitter_;
};

result<fence_ptr> gpu_backend::do_copy(const memory_span& dst, const memory_span& src,
                                       std::span<const fence_ptr> wait_for) {
  for (const auto* s : {&src, &dst}) {
    if (own_device_block(s->block) == nullptr && own_host_block(s->block) == nullptr) {
      return fail(errc::unsupported, title() + " backend: cannot copy " + (s == &src ? "from" : "to") +
                                         " a block another backend made");
    }
  }
  return submit(stream_owner(*dst.block, *src.block), stream_op{dst, src}, wait_for);
}

result<fence_ptr> gpu_backend::do_fill(const memory_span& dst, std::uint8_t value,
                                       std::span<const fence_ptr> wait_for) {
  // Host memory comes zeroed from the kernel and is filled by the CPU where
  // needed; a runtime memset is for device memory.
  const auto* b = own_device_block(dst.block);
  if (b == nullptr) {
    return fail(errc::unsupported, title() + " backend: fill needs device memory this backend made, not " +
                                       std::string(to_string(dst.block->kind)) + " memory");
  }
  stream_op op;
  op.dst = dst;
  op.fill = true;
  op.value = value;
  return submit(devices_[static_cast<std::size_t>(b->device)], std::move(op), wait_for);
}

result<fence_ptr> gpu_backend::submit(const std::shared_ptr<gpu_device>& dev, stream_op op,
                                      std::span<const fence_ptr> wait_for) {
  auto waits = sort_waits(wait_for);
  // The contract: a failed dependency fails the operation, nothing is done.
  if (waits.failed != 0) return fence::signaled(waits.failed);
  if (waits.other.empty()) return submit_now(*dev, op, waits.gpu);
  return submit_later(dev, std::move(op), std::move(waits));
}

sorted_waits gpu_backend::sort_waits(std::span<const fence_ptr> wait_for) const {
  sorted_waits out;
  for (const auto& f : wait_for) {
    if (f->is_signaled()) {
      if (f->error() != 0) {
        out.failed = f->error();
        return out;
      }
      continue;
    }
    const auto* ef = dynamic_cast<const event_fence*>(f.get());
    const bool on_our_stream = ef != nullptr && ef->owner() == this && ef->has_event();
    (on_our_stream ? out.gpu : out.other).push_back(f);
  }
  return out;
}

result<fence_ptr> gpu_backend::submit_now(gpu_device& dev, const stream_op& op,
                                          const std::vector<fence_ptr>& gpu_waits) {
  mutex_lock lock(dev.submit_mutex);
  auto f = event_fence::create(dev.fence_context, dev.last_seqno + 1, fence_kind_, poller_);
  f->set_owner(this);
  if (auto s = enqueue(dev, op, gpu_waits, *f); !s) return std::move(s).err();
  ++dev.last_seqno;
  return fence_ptr(std::move(f));
}

fence_ptr gpu_backend::submit_later(const std::shared_ptr<gpu_device>& dev, stream_op op,
                                    sorted_waits waits) {
  auto f = event_fence::create(fence::allocate_context(), 1, fence_kind_, poller_);
  f->set_owner(this);
  // The GPU waits sorted now are reused when the job starts (see the
  // header): their events do not change, and the job's copy of the list
  // keeps them alive.
  submitter_->submit_after(waits.other, [this, dev, op = std::move(op), f, gpu_waits = std::move(waits.gpu)](int upstream) {
    if (upstream != 0) {
      (void)f->signal(upstream);
      return;
    }
    gpu_device& d = *dev;
    mutex_lock lock(d.submit_mutex);
    // Nobody receives this error but the fence: keep its gist there.
    if (auto s = enqueue(d, op, gpu_waits, *f); !s) (void)f->signal(fence_errno(s.code()));
  });
  return f;
}

status gpu_backend::enqueue_op(gpu_device& dev, const stream_op& op) {
  const gpu_runtime& rt = *dev.runtime;
  if (op.fill) {
    auto s = rt.memset_async(dev.ref, address_of(op.dst), op.value, op.dst.size, dev.stream);
    if (!s) return std::move(s).err().prefixed("fill of " + std::to_string(op.dst.size) + " bytes");
    return s;
  }
  auto s = rt.memcpy_async(dev.ref, address_of(op.dst), address_of(op.src), op.src.size, dev.stream);
  if (!s) {
    return std::move(s).err().prefixed("copy of " + std::to_string(op.src.size) + " bytes, " +
                                       std::string(to_string(op.src.block->kind)) + " -> " +
                                       std::string(to_string(op.dst.block->kind)));
  }
  return s;
}

status gpu_backend::enqueue(gpu_device& dev, const stream_op& op,
                            const std::vector<fence_ptr>& gpu_waits, event_fence& f) {
  const gpu_runtime& rt = *dev.runtime;
  device_scope scope(dev);
  if (auto s = scope.check(op.what()); !s) return s;
  for (const auto& w : gpu_waits) {
    const auto* ev = static_cast<const runtime_event*>(static_cast<const event_fence&>(*w).event());
    if (auto s = rt.stream_wait_event(dev.ref, dev.stream, ev->handle()); !s) return s;
  }
  if (auto s = enqueue_op(dev, op); !s) return s;
  auto ev = rt.event_create(dev.ref);
  if (!ev) return std::move(ev).err();
  if (auto s = rt.event_record(dev.ref, *ev, dev.stream); !s) {
    rt.event_destroy(*ev);
    return s;
  }
  f.attach(std::make_unique<runtime_event>(devices_[static_cast<std::size_t>(dev.index())], *ev));
  return {};
}

// Every device's allocations are multiples of its own granularity, a power
// of two; rounding all of them to the largest keeps the caps promise. Peers
// matter only for VMM mappings (vmm_set_access).
backend_caps settle_caps(const gpu_runtime& rt, device_list& devices, bool peer_access) {
  backend_caps caps;
  caps.export_fd = true;
  caps.pinned_host = true;
  caps.peer_query = true;
  caps.fill = true;
  caps.host_mapped_device = false;
  caps.export_detaches_pageable_ranges = true;  // not registered: memfd ranges as the host backend's
  caps.device_granularity = 0;
  for (auto& dev : devices) {
    caps.export_fd = caps.export_fd && dev->vmm && dev->export_fd;
    caps.device_granularity = std::max(caps.device_granularity, dev->granularity);
    if (!peer_access || !dev->vmm) continue;
    for (auto& other : devices) {
      if (other == dev) continue;
      auto can = rt.can_access_peer(other->ref, dev->ref);
      if (can && *can) dev->peers.push_back(other->ref);
    }
  }
  for (auto& dev : devices) dev->granularity = caps.device_granularity;
  return caps;
}

}  // namespace

result<std::unique_ptr<backend>> create_gpu_backend(std::shared_ptr<const gpu_runtime> runtime,
                                                    const gpu_backend_config& config) {
  auto count = runtime->device_count();
  if (!count) {
    // Whatever the runtime says here (no device, no kernel driver, an init
    // error), there is no device of this kind to use.
    auto e = std::move(count).err();
    e.code = errc::no_device;
    return e;
  }
  if (*count == 0) {
    return fail(errc::no_device, std::string(runtime->caps().title) + ": the runtime reports 0 devices");
  }
  device_list devices;
  std::vector<device_info> infos;
  for (int i = 0; i < *count; ++i) {
    auto opened = open_device(runtime, i, config.use_vmm);
    if (!opened) return std::move(opened).err();
    devices.push_back(std::move(opened->device));
    infos.push_back(std::move(opened->info));
  }
  const backend_caps caps = settle_caps(*runtime, devices, config.peer_access);
  return std::unique_ptr<backend>(new gpu_backend(caps, std::move(infos), std::move(devices)));
}

result<std::unique_ptr<backend>> create_gpu_backend(result<std::shared_ptr<const gpu_runtime>> runtime,
                                                    const gpu_backend_config& config) {
  if (!runtime) return std::move(runtime).err();
  return create_gpu_backend(std::move(runtime).value(), config);
}

}  // namespace xbuf::gpu
