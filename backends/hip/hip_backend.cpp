// SPDX-License-Identifier: MIT
//
// Implementation notes
//   The copy path is the CUDA backend's (see cuda_backend.cpp's notes):
//   signaled dependencies are checked now, this backend's enqueued event
//   fences become hipStreamWaitEvent, anything else defers the copy to the
//   submitter thread.
#include "backends/hip/hip_backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "backends/gpu_common/deferred_submitter.hpp"
#include "backends/gpu_common/event_fence.hpp"
#include "backends/gpu_common/event_poller.hpp"
#include "backends/gpu_common/pci_numa.hpp"
#include "backends/hip/detail/hip_device.hpp"
#include "backends/hip/detail/hip_memory.hpp"
#include "backends/hip/hip_error.hpp"
#include "backends/hip/hip_runtime.hpp"
#include "core/pci_address.hpp"

namespace xbuf {

namespace {

using hip_detail::device_scope;
using hip_detail::hip_block;
using hip_detail::hip_device;
using hip_detail::hip_event;

constexpr std::string_view fence_kind = "hip-event";

void* address_of(const memory_span& s) { return reinterpret_cast<void*>(s.block->device_ptr + s.offset); }

class hip_backend final : public backend {
 public:
  hip_backend(backend_caps caps, std::vector<device_info> infos, std::vector<std::shared_ptr<hip_device>> devices)
      : backend(caps, std::move(infos)),
        devices_(std::move(devices)),
        poller_(std::make_shared<gpu::event_poller>("xbuf-hip-poll")),
        submitter_(std::make_unique<gpu::deferred_submitter>("xbuf-hip-submit")) {}

  ~hip_backend() override {
    submitter_.reset();
    for (const auto& dev : devices_) {
      device_scope scope(*dev);
      (void)dev->runtime->hipStreamSynchronize(dev->stream);
    }
    poller_.reset();
  }

 private:
  std::string_view do_name() const noexcept override { return "hip"; }

  result<memory_block_ptr> do_allocate_device(int device, std::size_t bytes) override {
    const auto& dev = devices_[static_cast<std::size_t>(device)];
    return dev->vmm ? hip_detail::allocate_vmm(dev, bytes) : hip_detail::allocate_malloc(dev, bytes);
  }

  result<memory_block_ptr> do_allocate_host(std::size_t bytes, bool pinned, int numa_node) override {
    return hip_detail::allocate_host(devices_.front(), bytes, pinned, numa_node);
  }

  result<exported_memory> do_export_fd(const memory_span& span) override {
    if (dynamic_cast<const hip_block*>(span.block.get()) == nullptr) {
      return fail(errc::unsupported, "HIP backend: cannot export a block another backend made");
    }
    return hip_detail::export_block(span);
  }

  result<memory_block_ptr> do_import_fd(const exported_memory& exported, int device) override {
    if (exported.kind == memory_kind::device) {
      if (device < 0 || static_cast<std::size_t>(device) >= devices_.size()) {
        if (exported.fd >= 0) ::close(exported.fd);
        return fail(errc::no_device, "HIP import: device memory needs a local device, got " + std::to_string(device));
      }
      return hip_detail::import_device(devices_[static_cast<std::size_t>(device)], exported);
    }
    return hip_detail::import_host(devices_.front(), exported);
  }

  std::optional<bool> do_can_access_peer(int device, int peer) override {
    if (device == peer) return true;
    int can = 0;
    if (devices_.front()->runtime->hipDeviceCanAccessPeer(&can, device, peer) != hipSuccess) return std::nullopt;
    return can != 0;
  }

  // xGMI link counts are not in the HIP runtime API (hipExtGetLinkTypeAndHopCount
  // gives a type and hop count, not links). Unknown.
  std::optional<int> do_link_count(int, int) override { return std::nullopt; }

  const std::shared_ptr<hip_device>& stream_owner(const hip_block& dst, const hip_block& src) const {
    if (src.kind == memory_kind::device) return devices_[static_cast<std::size_t>(src.device)];
    if (dst.kind == memory_kind::device) return devices_[static_cast<std::size_t>(dst.device)];
    return devices_.front();
  }

  bool own_enqueued(const fence_ptr& f) const {
    const auto* ef = dynamic_cast<const gpu::event_fence*>(f.get());
    return ef != nullptr && ef->owner() == this && ef->has_event();
  }

  result<fence_ptr> do_copy(const memory_span& dst, const memory_span& src,
                            std::span<const fence_ptr> wait_for) override {
    const auto* dst_block = dynamic_cast<const hip_block*>(dst.block.get());
    const auto* src_block = dynamic_cast<const hip_block*>(src.block.get());
    if (dst_block == nullptr || src_block == nullptr) {
      return fail(errc::unsupported, std::string("HIP backend: cannot copy ") +
                                         (src_block == nullptr ? "from" : "to") + " a block another backend made");
    }
    const auto& dev = stream_owner(*dst_block, *src_block);

    std::vector<fence_ptr> gpu_waits;
    std::vector<fence_ptr> foreign;
    for (const auto& f : wait_for) {
      if (f->is_signaled()) {
        if (f->error() != 0) return fence::signaled(f->error());
        continue;
      }
      (own_enqueued(f) ? gpu_waits : foreign).push_back(f);
    }

    if (foreign.empty()) {
      std::lock_guard lock(dev->submit_mutex);
      auto f = gpu::event_fence::create(dev->fence_context, dev->last_seqno + 1, fence_kind, poller_);
      f->set_owner(this);
      if (auto s = enqueue(*dev, dst, src, gpu_waits, *f); !s) return std::move(s).err();
      ++dev->last_seqno;
      return fence_ptr(std::move(f));
    }

    auto f = gpu::event_fence::create(fence::allocate_context(), 1, fence_kind, poller_);
    f->set_owner(this);
    submitter_->submit_after(foreign, [this, dev, dst, src, f, gpu_waits](int upstream_error) {
      if (upstream_error != 0) {
        (void)f->signal(upstream_error);
        return;
      }
      std::lock_guard lock(dev->submit_mutex);
      if (auto s = enqueue(*dev, dst, src, gpu_waits, *f); !s) {
        (void)f->signal(s.code() == errc::device_lost || s.code() == errc::no_device ? -ENODEV : -EIO);
      }
    });
    return fence_ptr(std::move(f));
  }

  // Locking: dev.submit_mutex held.
  status enqueue(hip_device& dev, const memory_span& dst, const memory_span& src,
                 const std::vector<fence_ptr>& waits, gpu::event_fence& f) {
    const hip_runtime& rt = *dev.runtime;
    device_scope scope(dev);
    if (auto s = scope.check("copy"); !s) return s;
    for (const auto& w : waits) {
      const auto* ev = static_cast<const hip_event*>(static_cast<const gpu::event_fence&>(*w).event());
      if (hipError_t rc = rt.hipStreamWaitEvent(dev.stream, ev->handle(), 0); rc != hipSuccess) {
        return hip_error(&rt, rc, "hipStreamWaitEvent(device " + std::to_string(dev.index) + ")");
      }
    }
    if (hipError_t rc = rt.hipMemcpyAsync(address_of(dst), address_of(src), src.size, hipMemcpyDefault, dev.stream);
        rc != hipSuccess) {
      return hip_error(&rt, rc, "hipMemcpyAsync(" + std::to_string(src.size) + " bytes, " +
                                    std::string(to_string(src.block->kind)) + " -> " +
                                    std::string(to_string(dst.block->kind)) + ", stream of device " +
                                    std::to_string(dev.index) + ")");
    }
    hipEvent_t ev = nullptr;
    if (hipError_t rc = rt.hipEventCreateWithFlags(&ev, hipEventDisableTiming); rc != hipSuccess) {
      return hip_error(&rt, rc, "hipEventCreateWithFlags(device " + std::to_string(dev.index) + ")");
    }
    if (hipError_t rc = rt.hipEventRecord(ev, dev.stream); rc != hipSuccess) {
      (void)rt.hipEventDestroy(ev);
      return hip_error(&rt, rc, "hipEventRecord(device " + std::to_string(dev.index) + ")");
    }
    f.attach(std::make_unique<hip_event>(devices_[static_cast<std::size_t>(dev.index)], ev));
    return {};
  }

  std::vector<std::shared_ptr<hip_device>> devices_;
  std::shared_ptr<gpu::event_poller> poller_;
  std::unique_ptr<gpu::deferred_submitter> submitter_;
};

result<std::shared_ptr<hip_device>> open_device(const std::shared_ptr<const hip_runtime>& rt, int index,
                                                bool use_vmm, device_info& info) {
  const std::string which = "device " + std::to_string(index);
  auto dev = std::make_shared<hip_device>();
  dev->runtime = rt;
  dev->index = index;
  info.vendor = "amd";
  char name[256] = {};
  if (hipError_t rc = rt->hipDeviceGetName(name, sizeof name - 1, index); rc != hipSuccess) {
    return hip_error(rt.get(), rc, "hipDeviceGetName(" + which + ")");
  }
  info.name = name;
  std::size_t total = 0;
  if (hipError_t rc = rt->hipDeviceTotalMem(&total, index); rc != hipSuccess) {
    return hip_error(rt.get(), rc, "hipDeviceTotalMem(" + which + ")");
  }
  info.memory_bytes = total;
  char bus[32] = {};
  if (rt->hipDeviceGetPCIBusId(bus, sizeof bus - 1, index) == hipSuccess) {
    info.pci_address = normalize_pci_address(bus).value_or("");
  }
  if (!info.pci_address.empty()) info.numa_node = gpu::numa_node_of_pci_device(info.pci_address);

  int vmm = 0;
  if (use_vmm && rt->has_vmm() &&
      rt->hipDeviceGetAttribute(&vmm, hip_vmm_abi::attribute_vmm_supported, index) == hipSuccess && vmm == 1) {
    hip_vmm_abi::allocation_prop prop{};
    prop.type = hip_vmm_abi::allocation_pinned;
    prop.requested_handle_type = hip_vmm_abi::handle_posix_fd;
    prop.location.type = hip_vmm_abi::location_device;
    prop.location.id = index;
    std::size_t gran = 0;
    if (rt->hipMemGetAllocationGranularity(&gran, &prop, hip_vmm_abi::granularity_minimum) == hipSuccess && gran > 0) {
      dev->vmm = true;
      dev->granularity = gran;
    }
  }
  device_scope scope(*dev);
  if (auto s = scope.check("opening the device"); !s) return std::move(s).err();
  if (hipError_t rc = rt->hipStreamCreateWithFlags(&dev->stream, hipStreamNonBlocking); rc != hipSuccess) {
    return hip_error(rt.get(), rc, "hipStreamCreateWithFlags(" + which + ", non-blocking)");
  }
  dev->fence_context = fence::allocate_context();
  return dev;
}

}  // namespace

result<std::unique_ptr<backend>> create_hip_backend(const hip_config& config) {
  auto rt = hip_runtime::load(config.libraries);
  if (!rt) return std::move(rt).err();

  int count = 0;
  if (hipError_t rc = (*rt)->hipGetDeviceCount(&count); rc != hipSuccess) {
    // ROCm reports "no GPU" here, as hipErrorNoDevice (or an init error
    // when the kernel driver is absent): either way there is no HIP device.
    auto e = hip_error(rt->get(), rc, "hipGetDeviceCount");
    e.code = errc::no_device;
    return e;
  }
  if (count == 0) return fail(errc::no_device, "hipGetDeviceCount: the HIP runtime reports 0 devices");

  std::vector<std::shared_ptr<hip_device>> devices;
  std::vector<device_info> infos;
  for (int i = 0; i < count; ++i) {
    device_info info;
    auto dev = open_device(*rt, i, config.use_vmm, info);
    if (!dev) return std::move(dev).err();
    devices.push_back(std::move(*dev));
    infos.push_back(std::move(info));
  }

  backend_caps caps;
  caps.export_fd = true;
  caps.pinned_host = true;
  caps.peer_query = true;
  caps.device_granularity = 0;
  for (auto& dev : devices) {
    caps.export_fd = caps.export_fd && dev->vmm;
    caps.device_granularity = std::max(caps.device_granularity, dev->granularity);
    if (!config.peer_access || !dev->vmm) continue;
    for (auto& other : devices) {
      if (other == dev) continue;
      int can = 0;
      if ((*rt)->hipDeviceCanAccessPeer(&can, other->index, dev->index) == hipSuccess && can != 0) {
        dev->peers.push_back(other->index);
      }
    }
  }
  for (auto& dev : devices) dev->granularity = caps.device_granularity;
  return std::unique_ptr<backend>(new hip_backend(caps, std::move(infos), std::move(devices)));
}

}  // namespace xbuf
