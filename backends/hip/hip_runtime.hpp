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
//     in a device_scope (gpu/gpu_device.hpp), which restores the caller's.
//   - hip_checked gives one checked member per entry point
//     (gpu/checked_call.hpp), so no call site tests a hipError_t by hand.
#pragma once

#include <hip/hip_runtime_api.h>

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "backends/gpu/checked_call.hpp"
#include "backends/gpu/runtime_library.hpp"
#include "backends/hip/hip_error.hpp"
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

// X(name, return type, parameters): the entry points xbuf calls, with the
// prototypes written out (see Overview). Required: every HIP >= 5 runtime.
// hipDeviceGetAttribute takes the attribute as int: see hip_vmm_abi.
#define XBUF_HIP_REQUIRED_FUNCTIONS(X)                                                   \
  X(hipGetErrorName, const char*, (hipError_t))                                         \
  X(hipGetErrorString, const char*, (hipError_t))                                       \
  X(hipRuntimeGetVersion, hipError_t, (int*))                                           \
  X(hipGetDeviceCount, hipError_t, (int*))                                              \
  X(hipGetDevice, hipError_t, (int*))                                                   \
  X(hipSetDevice, hipError_t, (int))                                                    \
  X(hipDeviceGetName, hipError_t, (char*, int, int))                                    \
  X(hipDeviceTotalMem, hipError_t, (std::size_t*, int))                                 \
  X(hipDeviceGetPCIBusId, hipError_t, (char*, int, int))                                \
  X(hipDeviceGetAttribute, hipError_t, (int*, int, int))                                \
  X(hipDeviceCanAccessPeer, hipError_t, (int*, int, int))                               \
  X(hipStreamCreateWithFlags, hipError_t, (hipStream_t*, unsigned int))                 \
  X(hipStreamDestroy, hipError_t, (hipStream_t))                                        \
  X(hipStreamSynchronize, hipError_t, (hipStream_t))                                    \
  X(hipStreamWaitEvent, hipError_t, (hipStream_t, hipEvent_t, unsigned int))            \
  X(hipEventCreateWithFlags, hipError_t, (hipEvent_t*, unsigned int))                   \
  X(hipEventDestroy, hipError_t, (hipEvent_t))                                          \
  X(hipEventRecord, hipError_t, (hipEvent_t, hipStream_t))                              \
  X(hipEventQuery, hipError_t, (hipEvent_t))                                            \
  X(hipMemcpyAsync, hipError_t, (void*, const void*, std::size_t, hipMemcpyKind, hipStream_t)) \
  X(hipMemsetAsync, hipError_t, (void*, int, std::size_t, hipStream_t))                 \
  X(hipMalloc, hipError_t, (void**, std::size_t))                                       \
  X(hipFree, hipError_t, (void*))                                                       \
  X(hipMemGetInfo, hipError_t, (std::size_t*, std::size_t*))                            \
  X(hipHostRegister, hipError_t, (void*, std::size_t, unsigned int))                    \
  X(hipHostUnregister, hipError_t, (void*))

// Optional: virtual memory management, resolved on HIP >= 6 runtimes only
// (ROCm 6 layouts, hip_vmm_abi); all or none.
#define XBUF_HIP_VMM_FUNCTIONS(X)                                                                           \
  X(hipMemCreate, hipError_t,                                                                               \
    (hip_vmm_abi::handle*, std::size_t, const hip_vmm_abi::allocation_prop*, unsigned long long))           \
  X(hipMemRelease, hipError_t, (hip_vmm_abi::handle))                                                       \
  X(hipMemAddressReserve, hipError_t, (void**, std::size_t, std::size_t, void*, unsigned long long))        \
  X(hipMemAddressFree, hipError_t, (void*, std::size_t))                                                    \
  X(hipMemMap, hipError_t, (void*, std::size_t, std::size_t, hip_vmm_abi::handle, unsigned long long))      \
  X(hipMemUnmap, hipError_t, (void*, std::size_t))                                                          \
  X(hipMemSetAccess, hipError_t, (void*, std::size_t, const hip_vmm_abi::access_desc*, std::size_t))        \
  X(hipMemGetAllocationGranularity, hipError_t, (std::size_t*, const hip_vmm_abi::allocation_prop*, int))   \
  X(hipMemExportToShareableHandle, hipError_t, (void*, hip_vmm_abi::handle, int, unsigned long long))       \
  X(hipMemImportFromShareableHandle, hipError_t, (hip_vmm_abi::handle*, void*, int))

// library() and version() (hipRuntimeGetVersion: major * 10'000'000 +
// minor * 100'000 + patch) come from runtime_table.
class hip_runtime final : public gpu::runtime_table {
 public:
  // Tries each name in order (default: libamdhip64.so, .so.6, .so.5) and
  // reads the runtime version (which needs no device).
  // Errors: no_device when no library loads ("libamdhip64.so not found: no
  // ROCm HIP runtime on this machine (dlopen: ...)") or when a required entry
  // point is missing (naming it).
  // Context: may block (runtime initialization); allocates.
  static result<std::shared_ptr<const hip_runtime>> load(std::vector<std::string> libraries = {});

  int major_version() const noexcept { return version() / 10'000'000; }
  bool has_vmm() const noexcept { return hipMemCreate != nullptr; }

  // The function table (see XBUF_HIP_*_FUNCTIONS; calls go through hip_checked).
#define XBUF_HIP_DECLARE_POINTER(name, ret, params) ret(*name) params = nullptr;
  XBUF_HIP_REQUIRED_FUNCTIONS(XBUF_HIP_DECLARE_POINTER)
  XBUF_HIP_VMM_FUNCTIONS(XBUF_HIP_DECLARE_POINTER)
#undef XBUF_HIP_DECLARE_POINTER

  hip_runtime() = default;  // load() builds it; public only for make_shared
};

// The runtime table's entry points, each returning a status.
#define XBUF_HIP_CHECKED_CALL(name, ret, params) XBUF_GPU_CHECKED_CALL(name)
class hip_checked final : public gpu::checked_calls<hip_runtime, hipError_t, hipSuccess, &hip_error> {
 public:
  using checked_calls::checked_calls;
  XBUF_HIP_REQUIRED_FUNCTIONS(XBUF_HIP_CHECKED_CALL)
  XBUF_HIP_VMM_FUNCTIONS(XBUF_HIP_CHECKED_CALL)
};
#undef XBUF_HIP_CHECKED_CALL

}  // namespace xbuf
