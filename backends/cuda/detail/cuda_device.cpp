// SPDX-License-Identifier: MIT
#include "backends/cuda/detail/cuda_device.hpp"

#include "backends/cuda/cuda_error.hpp"
#include "backends/gpu_common/pci_numa.hpp"
#include "core/fence.hpp"
#include "core/pci_address.hpp"

namespace xbuf::cuda_detail {

cuda_device::~cuda_device() {
  if (driver == nullptr || context == nullptr) return;
  if (stream != nullptr) {
    context_scope scope(*this);
    if (scope.ok()) {
      // Work still queued (a block freed right after its last copy) must not
      // run against a destroyed stream; errors no longer matter here.
      (void)driver->cuStreamSynchronize(stream);
      (void)driver->cuStreamDestroy_v2(stream);
    }
  }
  (void)driver->cuDevicePrimaryCtxRelease_v2(handle);
}

context_scope::context_scope(const cuda_device& dev) noexcept
    : dev_(dev), rc_(dev.driver->cuCtxPushCurrent_v2(dev.context)) {}

context_scope::~context_scope() {
  if (rc_ != CUDA_SUCCESS) return;
  CUcontext popped = nullptr;
  (void)dev_.driver->cuCtxPopCurrent_v2(&popped);
}

status context_scope::check(std::string_view what) const {
  if (ok()) return status{};
  return cuda_error(dev_.driver.get(), rc_,
                    "cuCtxPushCurrent(device " + std::to_string(dev_.index) + ") for " + std::string(what));
}

namespace {

int attribute(const cuda_driver& drv, CUdevice dev, CUdevice_attribute attr, int fallback) {
  int v = 0;
  return drv.cuDeviceGetAttribute(&v, attr, dev) == CUDA_SUCCESS ? v : fallback;
}

}  // namespace

result<opened_device> open_cuda_device(std::shared_ptr<const cuda_driver> driver, int ordinal,
                                       bool use_vmm) {
  const cuda_driver& drv = *driver;
  const std::string which = "device " + std::to_string(ordinal);
  auto dev = std::make_shared<cuda_device>();
  dev->index = ordinal;
  device_info info;
  info.vendor = "nvidia";

  if (CUresult rc = drv.cuDeviceGet(&dev->handle, ordinal); rc != CUDA_SUCCESS) {
    return cuda_error(&drv, rc, "cuDeviceGet(" + std::to_string(ordinal) + ")");
  }
  char name[256] = {};
  if (CUresult rc = drv.cuDeviceGetName(name, sizeof name - 1, dev->handle); rc != CUDA_SUCCESS) {
    return cuda_error(&drv, rc, "cuDeviceGetName(" + which + ")");
  }
  info.name = name;
  std::size_t total = 0;
  if (CUresult rc = drv.cuDeviceTotalMem_v2(&total, dev->handle); rc != CUDA_SUCCESS) {
    return cuda_error(&drv, rc, "cuDeviceTotalMem(" + which + ")");
  }
  info.memory_bytes = total;
  char bus[32] = {};
  if (drv.cuDeviceGetPCIBusId(bus, sizeof bus - 1, dev->handle) == CUDA_SUCCESS) {
    info.pci_address = normalize_pci_address(bus).value_or("");
  }
  // The host node closest to the GPU (CUDA 12.2+ drivers); older drivers
  // reject the attribute, and sysfs knows it for every PCI device.
  info.numa_node = attribute(drv, dev->handle, CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID, -1);
  if (info.numa_node < 0 && !info.pci_address.empty()) {
    info.numa_node = gpu::numa_node_of_pci_device(info.pci_address);
  }

  if (attribute(drv, dev->handle, CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 0) != 1) {
    return fail(errc::unsupported, "CUDA " + which + " (" + info.name +
                                       ") has no unified addressing, which the CUDA backend requires");
  }
  dev->vmm = use_vmm && drv.has_vmm() &&
             attribute(drv, dev->handle, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, 0) == 1;
  dev->posix_fd = dev->vmm &&
                  attribute(drv, dev->handle, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, 0) == 1;

  if (CUresult rc = drv.cuDevicePrimaryCtxRetain(&dev->context, dev->handle); rc != CUDA_SUCCESS) {
    return cuda_error(&drv, rc, "cuDevicePrimaryCtxRetain(" + which + ")");
  }
  dev->driver = std::move(driver);  // from here on the destructor releases the context
  context_scope scope(*dev);
  if (auto s = scope.check("opening the device"); !s) return std::move(s).err();
  if (CUresult rc = drv.cuStreamCreate(&dev->stream, CU_STREAM_NON_BLOCKING); rc != CUDA_SUCCESS) {
    return cuda_error(&drv, rc, "cuStreamCreate(" + which + ", non-blocking)");
  }
  if (dev->vmm) {
    CUmemAllocationProp prop{};
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = dev->handle;
    prop.requestedHandleTypes = dev->posix_fd ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : CU_MEM_HANDLE_TYPE_NONE;
    std::size_t gran = 0;
    if (CUresult rc = drv.cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM);
        rc != CUDA_SUCCESS) {
      return cuda_error(&drv, rc, "cuMemGetAllocationGranularity(" + which + ")");
    }
    dev->granularity = gran > 0 ? gran : 4096;
  }
  dev->fence_context = fence::allocate_context();
  return opened_device{std::move(dev), std::move(info)};
}

}  // namespace xbuf::cuda_detail
