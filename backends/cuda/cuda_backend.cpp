// SPDX-License-Identifier: MIT
//
// Implementation notes
//   copy() sorts its wait_for fences three ways: signaled ones (an error
//   among them fails the copy at once, through its fence), event fences of
//   this backend that are already on a stream (a GPU-side cuStreamWaitEvent),
//   and everything else, which sends the copy through the deferred
//   submitter. Copies enqueued directly take seqnos on their stream's fence
//   context under submit_mutex, so seqno order is stream order; a deferred
//   copy is enqueued later than it was numbered would be, so it gets a fresh
//   context instead of breaking that order.
#include "backends/cuda/cuda_backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <vector>

#include "backends/cuda/cuda_driver.hpp"
#include "backends/cuda/cuda_error.hpp"
#include "backends/cuda/detail/cuda_device.hpp"
#include "backends/cuda/detail/cuda_event.hpp"
#include "backends/cuda/detail/cuda_memory.hpp"
#include "backends/gpu_common/deferred_submitter.hpp"
#include "backends/gpu_common/event_fence.hpp"
#include "backends/gpu_common/event_poller.hpp"

namespace xbuf {

namespace {

using cuda_detail::context_scope;
using cuda_detail::cuda_block;
using cuda_detail::cuda_device;
using cuda_detail::cuda_event;

constexpr std::string_view fence_kind = "cuda-event";

CUdeviceptr address_of(const memory_span& s) {
  return static_cast<CUdeviceptr>(s.block->device_ptr + s.offset);
}

class cuda_backend final : public backend {
 public:
  cuda_backend(backend_caps caps, std::vector<device_info> infos, std::vector<std::shared_ptr<cuda_device>> devices)
      : backend(caps, std::move(infos)),
        devices_(std::move(devices)),
        poller_(std::make_shared<gpu::event_poller>("xbuf-cuda-poll")),
        submitter_(std::make_unique<gpu::deferred_submitter>("xbuf-cuda-submit")) {}

  ~cuda_backend() override {
    // Order matters: jobs that were ready run (their copies reach the
    // streams), waiting ones are cancelled; then the streams drain so every
    // attached event completes; then the poller's last pass signals them.
    submitter_.reset();
    for (const auto& dev : devices_) {
      context_scope scope(*dev);
      if (scope.ok()) (void)dev->driver->cuStreamSynchronize(dev->stream);
    }
    poller_.reset();
  }

 private:
  std::string_view do_name() const noexcept override { return "cuda"; }

  result<memory_block_ptr> do_allocate_device(int device, std::size_t bytes) override {
    const auto& dev = devices_[static_cast<std::size_t>(device)];
    return dev->vmm ? cuda_detail::allocate_vmm(dev, bytes) : cuda_detail::allocate_linear(dev, bytes);
  }

  result<memory_block_ptr> do_allocate_host(std::size_t bytes, bool pinned, int numa_node) override {
    return cuda_detail::allocate_host(devices_.front(), bytes, pinned, numa_node);
  }

  result<exported_memory> do_export_fd(const memory_span& span) override {
    if (dynamic_cast<const cuda_block*>(span.block.get()) == nullptr) {
      return fail(errc::unsupported, "CUDA backend: cannot export a block another backend made");
    }
    return cuda_detail::export_block(span);
  }

  result<memory_block_ptr> do_import_fd(const exported_memory& exported, int device) override {
    if (exported.kind == memory_kind::device) {
      if (device < 0 || static_cast<std::size_t>(device) >= devices_.size()) {
        if (exported.fd >= 0) ::close(exported.fd);
        return fail(errc::no_device, "CUDA import: device memory needs a local device, got " + std::to_string(device));
      }
      return cuda_detail::import_device(devices_[static_cast<std::size_t>(device)], exported);
    }
    return cuda_detail::import_host(devices_.front(), exported);
  }

  std::optional<bool> do_can_access_peer(int device, int peer) override {
    const auto& a = *devices_[static_cast<std::size_t>(device)];
    const auto& b = *devices_[static_cast<std::size_t>(peer)];
    if (device == peer) return true;
    int can = 0;
    if (a.driver->cuDeviceCanAccessPeer(&can, a.handle, b.handle) != CUDA_SUCCESS) return std::nullopt;
    return can != 0;
  }

  // NVLink counts need NVML; the driver API does not give them. Unknown.
  std::optional<int> do_link_count(int, int) override { return std::nullopt; }

  // The stream a copy runs on: the device side of it (source first), or
  // device 0 for host-to-host.
  const std::shared_ptr<cuda_device>& stream_owner(const cuda_block& dst, const cuda_block& src) const {
    if (src.kind == memory_kind::device) return devices_[static_cast<std::size_t>(src.device)];
    if (dst.kind == memory_kind::device) return devices_[static_cast<std::size_t>(dst.device)];
    return devices_.front();
  }

  result<fence_ptr> do_copy(const memory_span& dst, const memory_span& src,
                            std::span<const fence_ptr> wait_for) override {
    const auto* dst_block = dynamic_cast<const cuda_block*>(dst.block.get());
    const auto* src_block = dynamic_cast<const cuda_block*>(src.block.get());
    if (dst_block == nullptr || src_block == nullptr) {
      return fail(errc::unsupported, std::string("CUDA backend: cannot copy ") +
                                         (src_block == nullptr ? "from" : "to") +
                                         " a block another backend made");
    }
    const auto& dev = stream_owner(*dst_block, *src_block);

    std::vector<const cuda_event*> gpu_waits;
    std::vector<fence_ptr> foreign;
    for (const auto& f : wait_for) {
      if (f->is_signaled()) {
        // The contract: a failed dependency fails the copy, nothing is done.
        if (f->error() != 0) return fence::signaled(f->error());
        continue;
      }
      const auto* ef = dynamic_cast<const gpu::event_fence*>(f.get());
      if (ef != nullptr && ef->owner() == this && ef->has_event()) {
        gpu_waits.push_back(static_cast<const cuda_event*>(ef->event()));
      } else {
        foreign.push_back(f);
      }
    }

    if (foreign.empty()) {
      std::lock_guard lock(dev->submit_mutex);
      auto f = gpu::event_fence::create(dev->fence_context, dev->last_seqno + 1, fence_kind, poller_);
      f->set_owner(this);
      if (auto s = enqueue(*dev, dst, src, gpu_waits, *f); !s) return std::move(s).err();
      ++dev->last_seqno;
      return fence_ptr(std::move(f));
    }

    // Same-backend fences that are already enqueued still become GPU waits
    // when the job starts: they may not have signaled by then.
    auto f = gpu::event_fence::create(fence::allocate_context(), 1, fence_kind, poller_);
    f->set_owner(this);
    std::vector<fence_ptr> gpu_wait_fences;
    for (const auto& w : wait_for) {
      const auto* ef = dynamic_cast<const gpu::event_fence*>(w.get());
      if (ef != nullptr && ef->owner() == this && ef->has_event()) gpu_wait_fences.push_back(w);
    }
    submitter_->submit_after(foreign, [this, dev, dst, src, f, gpu_wait_fences](int upstream_error) {
      if (upstream_error != 0) {
        (void)f->signal(upstream_error);
        return;
      }
      std::vector<const cuda_event*> waits;
      for (const auto& w : gpu_wait_fences) {
        waits.push_back(static_cast<const cuda_event*>(static_cast<const gpu::event_fence&>(*w).event()));
      }
      std::lock_guard lock(dev->submit_mutex);
      if (auto s = enqueue(*dev, dst, src, waits, *f); !s) {
        // Nobody receives this error but the fence: keep its gist there.
        (void)f->signal(s.code() == errc::device_lost || s.code() == errc::no_device ? -ENODEV : -EIO);
      }
    });
    return fence_ptr(std::move(f));
  }

  // Enqueues waits, the copy and an event on dev's stream and attaches the
  // event to `f`. Locking: dev.submit_mutex held.
  status enqueue(cuda_device& dev, const memory_span& dst, const memory_span& src,
                 const std::vector<const cuda_event*>& waits, gpu::event_fence& f) {
    const cuda_driver& drv = *dev.driver;
    context_scope scope(dev);
    if (auto s = scope.check("copy"); !s) return s;
    for (const auto* w : waits) {
      if (CUresult rc = drv.cuStreamWaitEvent(dev.stream, w->handle(), 0); rc != CUDA_SUCCESS) {
        return cuda_error(&drv, rc, "cuStreamWaitEvent(device " + std::to_string(dev.index) + ")");
      }
    }
    if (CUresult rc = drv.cuMemcpyAsync(address_of(dst), address_of(src), src.size, dev.stream); rc != CUDA_SUCCESS) {
      return cuda_error(&drv, rc, "cuMemcpyAsync(" + std::to_string(src.size) + " bytes, " +
                                      std::string(to_string(src.block->kind)) + " -> " +
                                      std::string(to_string(dst.block->kind)) + ", stream of device " +
                                      std::to_string(dev.index) + ")");
    }
    CUevent ev = nullptr;
    if (CUresult rc = drv.cuEventCreate(&ev, CU_EVENT_DISABLE_TIMING); rc != CUDA_SUCCESS) {
      return cuda_error(&drv, rc, "cuEventCreate(device " + std::to_string(dev.index) + ")");
    }
    if (CUresult rc = drv.cuEventRecord(ev, dev.stream); rc != CUDA_SUCCESS) {
      (void)drv.cuEventDestroy_v2(ev);
      return cuda_error(&drv, rc, "cuEventRecord(device " + std::to_string(dev.index) + ")");
    }
    f.attach(std::make_unique<cuda_event>(devices_[static_cast<std::size_t>(dev.index)], ev));
    return {};
  }

  std::vector<std::shared_ptr<cuda_device>> devices_;
  std::shared_ptr<gpu::event_poller> poller_;
  std::unique_ptr<gpu::deferred_submitter> submitter_;
};

}  // namespace

result<std::unique_ptr<backend>> create_cuda_backend(const cuda_config& config) {
  auto driver = cuda_driver::load(config.library);
  if (!driver) return std::move(driver).err();
  const cuda_driver& drv = **driver;

  int count = 0;
  if (CUresult rc = drv.cuDeviceGetCount(&count); rc != CUDA_SUCCESS) {
    auto e = cuda_error(&drv, rc, "cuDeviceGetCount");
    e.code = errc::no_device;
    return e;
  }
  if (count == 0) return fail(errc::no_device, "cuDeviceGetCount: the CUDA driver reports 0 devices");

  std::vector<std::shared_ptr<cuda_device>> devices;
  std::vector<device_info> infos;
  for (int i = 0; i < count; ++i) {
    auto opened = cuda_detail::open_cuda_device(*driver, i, config.use_vmm);
    if (!opened) return std::move(opened).err();
    devices.push_back(std::move(opened->device));
    infos.push_back(std::move(opened->info));
  }

  backend_caps caps;
  caps.export_fd = true;
  caps.pinned_host = true;
  caps.peer_query = true;
  caps.host_mapped_device = false;
  caps.device_granularity = 0;
  for (auto& dev : devices) {
    caps.export_fd = caps.export_fd && dev->posix_fd;
    caps.device_granularity = std::max(caps.device_granularity, dev->granularity);
    if (!config.peer_access) continue;
    // Peers that may map this device's memory: those the driver lets access it.
    for (auto& other : devices) {
      if (other == dev) continue;
      int can = 0;
      if (drv.cuDeviceCanAccessPeer(&can, other->handle, dev->handle) == CUDA_SUCCESS && can != 0) {
        dev->peers.push_back(other->handle);
      }
    }
  }
  // Every device's allocations are multiples of its own granularity, a power
  // of two; rounding all of them to the largest keeps the caps promise.
  for (auto& dev : devices) dev->granularity = caps.device_granularity;

  return std::unique_ptr<backend>(new cuda_backend(caps, std::move(infos), std::move(devices)));
}

}  // namespace xbuf
