// SPDX-License-Identifier: MIT
#include "backends/cuda/cuda_prims.hpp"

#include <cstdint>
#include <vector>

namespace xbuf {

namespace {

using gpu::device_address;
using gpu::device_ref;
using gpu::on_device;

constexpr gpu::runtime_caps cuda_caps{
    .name = "cuda",
    .title = "CUDA",
    .vendor = "nvidia",
    .linear_not_exportable = "CUDA device memory from cuMemAlloc cannot be exported by fd "
                             "(VMM not available on this device or disabled)",
};

CUstream as_stream(gpu::stream_t s) noexcept { return static_cast<CUstream>(s); }
CUevent as_event(gpu::event_t e) noexcept { return static_cast<CUevent>(e); }
std::string which(const device_ref& d) { return "device " + std::to_string(d.ordinal); }

// Physical memory on d, pinned, with the POSIX-fd handle type if asked.
CUmemAllocationProp allocation_prop(const device_ref& d, bool export_fd) noexcept {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = d.native;
  prop.requestedHandleTypes = export_fd ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : CU_MEM_HANDLE_TYPE_NONE;
  return prop;
}

class cuda_prims final : public gpu::gpu_runtime {
 public:
  explicit cuda_prims(std::shared_ptr<const cuda_driver> driver)
      : gpu_runtime(cuda_caps), drv_(std::move(driver)), chk_(*drv_) {}

  result<int> device_count() const override {
    int n = 0;
    if (auto s = chk_.cuDeviceGetCount("", &n); !s) return std::move(s).err();
    return n;
  }

  status open_device(device_ref& d) const override {
    CUdevice dev = 0;
    if (auto s = chk_.cuDeviceGet(std::to_string(d.ordinal), &dev, d.ordinal); !s) return s;
    CUcontext ctx = nullptr;
    if (auto s = chk_.cuDevicePrimaryCtxRetain(which(d), &ctx, dev); !s) return s;
    d.native = dev;
    d.context = ctx;
    return {};
  }

  void close_device(const device_ref& d) const noexcept override {
    (void)drv_->cuDevicePrimaryCtxRelease_v2(d.native);
  }

  result<gpu::device_props> query_device(const device_ref& d, bool use_vmm) const override {
    gpu::device_props p;
    char name[256] = {};
    if (auto s = chk_.cuDeviceGetName(which(d), name, int{sizeof name - 1}, d.native); !s) return std::move(s).err();
    p.name = name;
    if (auto s = chk_.cuDeviceTotalMem_v2(which(d), &p.memory_bytes, d.native); !s) return std::move(s).err();
    char bus[32] = {};
    if (chk_.cuDeviceGetPCIBusId(which(d), bus, int{sizeof bus - 1}, d.native)) p.pci_bus_id = bus;
    // The host node closest to the GPU (CUDA 12.2+ drivers; older ones
    // reject the attribute and the skeleton asks sysfs).
    p.numa_node = attribute(d, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, -1);
    p.unified_addressing = attribute(d, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 0) == 1;
    p.vmm = use_vmm && drv_->has_vmm() &&
            attribute(d, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 0) == 1;
    p.vmm_export_fd = p.vmm && attribute(d, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 0) == 1;
    return p;
  }

  result<bool> can_access_peer(const device_ref& d, const device_ref& peer) const override {
    int can = 0;
    auto s = chk_.cuDeviceCanAccessPeer(which(d) + ", peer " + std::to_string(peer.ordinal), &can, d.native,
                                        peer.native);
    if (!s) return std::move(s).err();
    return can != 0;
  }

  status make_current(const device_ref& d, gpu::current_token& saved) const override {
    if (auto s = chk_.cuCtxPushCurrent_v2(which(d), static_cast<CUcontext>(d.context)); !s) return s;
    saved.entered = true;
    return {};
  }

  void restore_current(const device_ref&, const gpu::current_token& saved) const noexcept override {
    if (!saved.entered) return;
    CUcontext popped = nullptr;
    (void)drv_->cuCtxPopCurrent_v2(&popped);
  }

  result<gpu::stream_t> stream_create(const device_ref& d) const override {
    CUstream s = nullptr;
    if (auto st = chk_.cuStreamCreate(which(d) + ", non-blocking", &s, unsigned{CU_STREAM_NON_BLOCKING}); !st) {
      return std::move(st).err();
    }
    return gpu::stream_t{s};
  }
  void stream_destroy(gpu::stream_t s) const noexcept override { (void)drv_->cuStreamDestroy_v2(as_stream(s)); }
  void stream_synchronize(gpu::stream_t s) const noexcept override {
    (void)drv_->cuStreamSynchronize(as_stream(s));
  }
  status stream_wait_event(const device_ref& d, gpu::stream_t s, gpu::event_t e) const override {
    return chk_.cuStreamWaitEvent(which(d), as_stream(s), as_event(e), 0U);
  }
  status memcpy_async(const device_ref& d, device_address dst, device_address src, std::size_t bytes,
                      gpu::stream_t s) const override {
    return chk_.cuMemcpyAsync(std::to_string(bytes) + " bytes, stream of " + which(d), CUdeviceptr{dst},
                              CUdeviceptr{src}, bytes, as_stream(s));
  }
  status memset_async(const device_ref& d, device_address dst, std::uint8_t value, std::size_t bytes,
                      gpu::stream_t s) const override {
    return chk_.cuMemsetD8Async(std::to_string(bytes) + " bytes, stream of " + which(d), CUdeviceptr{dst},
                                static_cast<unsigned char>(value), bytes, as_stream(s));
  }

  result<gpu::event_t> event_create(const device_ref& d) const override {
    CUevent e = nullptr;
    if (auto s = chk_.cuEventCreate(which(d), &e, unsigned{CU_EVENT_DISABLE_TIMING}); !s) return std::move(s).err();
    return gpu::event_t{e};
  }
  status event_record(const device_ref& d, gpu::event_t e, gpu::stream_t s) const override {
    return chk_.cuEventRecord(which(d), as_event(e), as_stream(s));
  }
  std::optional<int> event_query(gpu::event_t e) const noexcept override {
    // A three-way answer, not an error check: NOT_READY means running.
    const CUresult rc = drv_->cuEventQuery(as_event(e));
    if (rc == CUDA_ERROR_NOT_READY) return std::nullopt;
    return cuda_codes.fence_errno_of(rc);
  }
  void event_destroy(gpu::event_t e) const noexcept override { (void)drv_->cuEventDestroy_v2(as_event(e)); }

  result<device_address> mem_alloc(const device_ref& d, std::size_t bytes) const override {
    CUdeviceptr p = 0;
    if (auto s = chk_.cuMemAlloc_v2(on_device(d, bytes), &p, bytes); !s) return std::move(s).err();
    return device_address{p};
  }
  void mem_free(device_address p) const noexcept override { (void)drv_->cuMemFree_v2(CUdeviceptr{p}); }
  std::optional<gpu::memory_usage> mem_info() const override {
    gpu::memory_usage u;
    if (!chk_.cuMemGetInfo_v2("", &u.free_bytes, &u.total_bytes)) return std::nullopt;
    return u;
  }
  status host_register(void* p, std::size_t bytes) const override {
    // PORTABLE: pinned for every context, so any device's stream copies it
    // at full speed. DEVICEMAP: kernels may read it directly.
    return chk_.cuMemHostRegister_v2(std::to_string(bytes) + " bytes, portable", p, bytes,
                                     unsigned{CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP});
  }
  void host_unregister(void* p) const noexcept override { (void)drv_->cuMemHostUnregister(p); }

  result<std::size_t> vmm_granularity(const device_ref& d, bool export_fd) const override;
  result<gpu::vmm_handle> vmm_create(const device_ref& d, std::size_t bytes, bool export_fd) const override;
  void vmm_release(gpu::vmm_handle h) const noexcept override { (void)drv_->cuMemRelease(h); }
  result<device_address> vmm_reserve(const device_ref& d, std::size_t bytes, std::size_t alignment) const override;
  void vmm_free_address(device_address p, std::size_t bytes) const noexcept override {
    (void)drv_->cuMemAddressFree(CUdeviceptr{p}, bytes);
  }
  status vmm_map(const device_ref& d, device_address p, std::size_t bytes, gpu::vmm_handle h) const override {
    return chk_.cuMemMap(on_device(d, bytes), CUdeviceptr{p}, bytes, std::size_t{0}, h, 0ULL);
  }
  void vmm_unmap(device_address p, std::size_t bytes) const noexcept override {
    (void)drv_->cuMemUnmap(CUdeviceptr{p}, bytes);
  }
  status vmm_set_access(const device_ref& d, device_address p, std::size_t bytes,
                        std::span<const device_ref> devices) const override;
  result<int> vmm_export_fd(const device_ref& d, gpu::vmm_handle h) const override;
  result<gpu::vmm_handle> vmm_import_fd(const device_ref& d, int fd) const override;

 private:
  // The attribute, or `fallback` where the driver does not know it.
  int attribute(const device_ref& d, CUdevice_attribute a, int fallback) const {
    int v = 0;
    return chk_.cuDeviceGetAttribute(which(d), &v, a, d.native) ? v : fallback;
  }

  std::shared_ptr<const cuda_driver> drv_;
  cuda_checked chk_;
};

result<std::size_t> cuda_prims::vmm_granularity(const device_ref& d, bool export_fd) const {
  const CUmemAllocationProp prop = allocation_prop(d, export_fd);
  std::size_t g = 0;
  auto s = chk_.cuMemGetAllocationGranularity(which(d), &g, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (!s) return std::move(s).err();
  return g;
}

result<gpu::vmm_handle> cuda_prims::vmm_create(const device_ref& d, std::size_t bytes, bool export_fd) const {
  const CUmemAllocationProp prop = allocation_prop(d, export_fd);
  CUmemGenericAllocationHandle h = 0;
  if (auto s = chk_.cuMemCreate(on_device(d, bytes), &h, bytes, &prop, 0ULL); !s) return std::move(s).err();
  return gpu::vmm_handle{h};
}

result<device_address> cuda_prims::vmm_reserve(const device_ref& d, std::size_t bytes,
                                               std::size_t alignment) const {
  CUdeviceptr p = 0;
  auto s = chk_.cuMemAddressReserve(on_device(d, bytes), &p, bytes, alignment, CUdeviceptr{0}, 0ULL);
  if (!s) return std::move(s).err();
  return device_address{p};
}

status cuda_prims::vmm_set_access(const device_ref& d, device_address p, std::size_t bytes,
                                  std::span<const device_ref> devices) const {
  std::vector<CUmemAccessDesc> access;
  for (const auto& each : devices) {
    CUmemAccessDesc a{};
    a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    a.location.id = each.native;
    a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    access.push_back(a);
  }
  return chk_.cuMemSetAccess(on_device(d, bytes) + ", " + std::to_string(access.size()) + " devices", CUdeviceptr{p},
                             bytes, access.data(), access.size());
}

result<int> cuda_prims::vmm_export_fd(const device_ref& d, gpu::vmm_handle h) const {
  int fd = -1;
  auto s = chk_.cuMemExportToShareableHandle(which(d), static_cast<void*>(&fd), h,
                                             CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0ULL);
  if (!s) return std::move(s).err();
  return fd;
}

result<gpu::vmm_handle> cuda_prims::vmm_import_fd(const device_ref& d, int fd) const {
  CUmemGenericAllocationHandle h = 0;
  // For POSIX fds the "OS handle" argument is the fd itself, cast to a pointer.
  auto s = chk_.cuMemImportFromShareableHandle("fd " + std::to_string(fd) + ", " + which(d), &h,
                                               reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)),
                                               CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  if (!s) return std::move(s).err();
  return gpu::vmm_handle{h};
}

}  // namespace

result<std::shared_ptr<const gpu::gpu_runtime>> load_cuda_runtime(const std::string& library) {
  auto loaded = cuda_driver::load(library);
  if (!loaded) return std::move(loaded).err();
  return std::shared_ptr<const gpu::gpu_runtime>(std::make_shared<const cuda_prims>(std::move(loaded).value()));
}

}  // namespace xbuf
