// SPDX-License-Identifier: MIT
//
// hip_runtime.hpp - the ROCm HIP runtime, loaded at run time.
//
// Overview
//   Like cuda_driver.hpp for HIP: dlopen() of libamdhip64.so (then .so.6,
//   .so.5), one table of function pointers. The HIP header is used for
//   hipError_t and opaque handle types only; the prototypes are written out
//   here because HIP's C++ header overloads some calls (hipMalloc) and
//   because its structures changed between ROCm 5 and 6 (see hip_vmm_abi).
//
// Rules
//   - load() is thread-safe; the table is built once per library name and
//     shared; the library is never dlclose()d.
//   - Required entry points missing -> load() fails naming the symbol;
//     the virtual memory calls are optional (has_vmm()).
//   - HIP keeps a per-thread current device: callers wrap calls that use it
//     in a device_scope (hip_backend.cpp) and restore the caller's device.
#pragma once

#include <hip/hip_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace xbuf {

// The ROCm >= 6 layout of hipMemAllocationProp / hipMemAccessDesc (the same
// as CUDA's). ROCm 5's header has an older, incompatible layout, so xbuf
// declares the one it uses and calls the VMM API only on HIP >= 6 runtimes.
namespace hip_vmm_abi {
struct mem_location {
  int type;  // 1 = hipMemLocationTypeDevice
  int id;
};
struct allocation_prop {
  int type;                 // 1 = hipMemAllocationTypePinned
  int requested_handle_type;  // 1 = hipMemHandleTypePosixFileDescriptor, 0 = none
  mem_location location;
  void* win32_handle_meta_data;
  struct {
    unsigned char compression_type;
    unsigned char gpu_direct_rdma_capable;
    unsigned short usage;
  } alloc_flags;
};
struct access_desc {
  mem_location location;
  int flags;  // 3 = hipMemAccessFlagsProtReadWrite
};
using handle = void*;  // hipMemGenericAllocationHandle_t
inline constexpr int location_device = 1;
inline constexpr int allocation_pinned = 1;
inline constexpr int handle_posix_fd = 1;
inline constexpr int access_read_write = 3;
inline constexpr int granularity_minimum = 0;
// hipDeviceAttributeVirtualMemoryManagementSupported in ROCm 6's enum.
inline constexpr int attribute_vmm_supported = 89;
}  // namespace hip_vmm_abi

class hip_runtime {
 public:
  // Tries each name in order (default: libamdhip64.so, .so.6, .so.5) and
  // reads the runtime version (which needs no device).
  // Errors: no_device when no library loads ("libamdhip64.so not found: no
  // ROCm HIP runtime on this machine (dlopen: ...)") or when a required entry
  // point is missing (naming it).
  // Context: may block (runtime initialization); allocates.
  static result<std::shared_ptr<const hip_runtime>> load(std::vector<std::string> libraries = {});

  const std::string& library() const noexcept { return library_; }
  // hipRuntimeGetVersion: major * 10'000'000 + minor * 100'000 + patch.
  int version() const noexcept { return version_; }
  int major_version() const noexcept { return version_ / 10'000'000; }
  bool has_vmm() const noexcept { return hipMemCreate != nullptr; }

  using fn_error_name = const char* (*)(hipError_t);
  fn_error_name hipGetErrorName = nullptr;
  fn_error_name hipGetErrorString = nullptr;
  hipError_t (*hipRuntimeGetVersion)(int*) = nullptr;
  hipError_t (*hipGetDeviceCount)(int*) = nullptr;
  hipError_t (*hipGetDevice)(int*) = nullptr;
  hipError_t (*hipSetDevice)(int) = nullptr;
  hipError_t (*hipDeviceGetName)(char*, int, int) = nullptr;
  hipError_t (*hipDeviceTotalMem)(std::size_t*, int) = nullptr;
  hipError_t (*hipDeviceGetPCIBusId)(char*, int, int) = nullptr;
  hipError_t (*hipDeviceGetAttribute)(int*, int, int) = nullptr;  // attribute as int: see hip_vmm_abi
  hipError_t (*hipDeviceCanAccessPeer)(int*, int, int) = nullptr;
  hipError_t (*hipStreamCreateWithFlags)(hipStream_t*, unsigned int) = nullptr;
  hipError_t (*hipStreamDestroy)(hipStream_t) = nullptr;
  hipError_t (*hipStreamSynchronize)(hipStream_t) = nullptr;
  hipError_t (*hipStreamWaitEvent)(hipStream_t, hipEvent_t, unsigned int) = nullptr;
  hipError_t (*hipEventCreateWithFlags)(hipEvent_t*, unsigned int) = nullptr;
  hipError_t (*hipEventDestroy)(hipEvent_t) = nullptr;
  hipError_t (*hipEventRecord)(hipEvent_t, hipStream_t) = nullptr;
  hipError_t (*hipEventQuery)(hipEvent_t) = nullptr;
  hipError_t (*hipMemcpyAsync)(void*, const void*, std::size_t, hipMemcpyKind, hipStream_t) = nullptr;
  hipError_t (*hipMalloc)(void**, std::size_t) = nullptr;
  hipError_t (*hipFree)(void*) = nullptr;
  hipError_t (*hipMemGetInfo)(std::size_t*, std::size_t*) = nullptr;
  hipError_t (*hipHostRegister)(void*, std::size_t, unsigned int) = nullptr;
  hipError_t (*hipHostUnregister)(void*) = nullptr;
  // Optional: virtual memory management (ROCm >= 6 layouts, hip_vmm_abi).
  hipError_t (*hipMemCreate)(hip_vmm_abi::handle*, std::size_t, const hip_vmm_abi::allocation_prop*,
                             unsigned long long) = nullptr;
  hipError_t (*hipMemRelease)(hip_vmm_abi::handle) = nullptr;
  hipError_t (*hipMemAddressReserve)(void**, std::size_t, std::size_t, void*, unsigned long long) = nullptr;
  hipError_t (*hipMemAddressFree)(void*, std::size_t) = nullptr;
  hipError_t (*hipMemMap)(void*, std::size_t, std::size_t, hip_vmm_abi::handle, unsigned long long) = nullptr;
  hipError_t (*hipMemUnmap)(void*, std::size_t) = nullptr;
  hipError_t (*hipMemSetAccess)(void*, std::size_t, const hip_vmm_abi::access_desc*, std::size_t) = nullptr;
  hipError_t (*hipMemGetAllocationGranularity)(std::size_t*, const hip_vmm_abi::allocation_prop*, int) = nullptr;
  hipError_t (*hipMemExportToShareableHandle)(void*, hip_vmm_abi::handle, int, unsigned long long) = nullptr;
  hipError_t (*hipMemImportFromShareableHandle)(hip_vmm_abi::handle*, void*, int) = nullptr;

  hip_runtime() = default;  // load() builds it; public only for make_shared
  hip_runtime(const hip_runtime&) = delete;
  hip_runtime& operator=(const hip_runtime&) = delete;

 private:
  friend struct hip_runtime_loader;
  std::string library_;
  int version_ = 0;
};

}  // namespace xbuf
