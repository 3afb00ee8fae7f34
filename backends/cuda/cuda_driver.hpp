// SPDX-License-Identifier: MIT
//
// cuda_driver.hpp - the CUDA driver API, loaded at run time.
//
// Overview
//   xbuf never links libcuda: one build must run on machines with and without
//   an NVIDIA driver. cuda_driver dlopen()s libcuda.so.1 once and resolves
//   every entry point it uses into a table of function pointers. cuda.h is
//   used for types and enums only.
//
//   Symbols are resolved by their exact versioned names ("cuMemAlloc_v2",
//   "cuCtxPushCurrent_v2", "cuDevicePrimaryCtxRelease_v2", ...), the same
//   names cuda.h's #defines make a linked program call, and each pointer's
//   type is the prototype cuda.h declares for that exact name - so the ABI of
//   every call is the one the header documents, whatever driver version is
//   installed. (cuGetProcAddress would pick versions by CUDA release instead;
//   resolving the named symbols is equivalent for the calls used here, and
//   also works with drivers older than 11.3.)
//
//   cuda_checked wraps the same table with one checked member per entry point
//   (gpu/checked_call.hpp): cuda_checked(drv).cuStreamCreate("device 0", &s,
//   flags) returns a status naming the call, so no call site tests a
//   CUresult by hand.
//
// Rules
//   - load() is thread-safe and cheap after the first call for a library name:
//     the table is built once per name and shared (shared_ptr) by everything
//     that calls through it, so it outlives every backend, block and fence.
//   - The library is never dlclose()d: driver threads may still run code from
//     it after the last handle is gone.
//   - Required entry points missing -> load() fails naming the first missing
//     one; optional ones (the virtual memory management calls) may be null and
//     callers check has_vmm().
#pragma once

#include <cuda.h>

#include <memory>
#include <string>

#include "backends/cuda/cuda_error.hpp"
#include "backends/gpu/checked_call.hpp"
#include "backends/gpu/runtime_library.hpp"
#include "core/result.hpp"

namespace xbuf {

// X(name): entry points every supported driver (>= CUDA 10.2) exports.
#define XBUF_CUDA_REQUIRED_FUNCTIONS(X) \
  X(cuGetErrorName)                     \
  X(cuGetErrorString)                   \
  X(cuInit)                             \
  X(cuDriverGetVersion)                 \
  X(cuDeviceGetCount)                   \
  X(cuDeviceGet)                        \
  X(cuDeviceGetName)                    \
  X(cuDeviceTotalMem_v2)                \
  X(cuDeviceGetAttribute)               \
  X(cuDeviceGetPCIBusId)                \
  X(cuDeviceCanAccessPeer)              \
  X(cuDeviceGetP2PAttribute)            \
  X(cuDevicePrimaryCtxRetain)           \
  X(cuDevicePrimaryCtxRelease_v2)       \
  X(cuCtxPushCurrent_v2)                \
  X(cuCtxPopCurrent_v2)                 \
  X(cuStreamCreate)                     \
  X(cuStreamDestroy_v2)                 \
  X(cuStreamSynchronize)                \
  X(cuStreamWaitEvent)                  \
  X(cuEventCreate)                      \
  X(cuEventDestroy_v2)                  \
  X(cuEventRecord)                      \
  X(cuEventQuery)                       \
  X(cuMemcpyAsync)                      \
  X(cuMemsetD8Async)                    \
  X(cuMemAlloc_v2)                      \
  X(cuMemFree_v2)                       \
  X(cuMemGetInfo_v2)                    \
  X(cuMemHostRegister_v2)               \
  X(cuMemHostUnregister)

// X(name): the virtual memory management calls (CUDA 10.2+); absent on old
// drivers, in which case device memory falls back to cuMemAlloc.
#define XBUF_CUDA_VMM_FUNCTIONS(X)       \
  X(cuMemCreate)                         \
  X(cuMemRelease)                        \
  X(cuMemAddressReserve)                 \
  X(cuMemAddressFree)                    \
  X(cuMemMap)                            \
  X(cuMemUnmap)                          \
  X(cuMemSetAccess)                      \
  X(cuMemGetAllocationGranularity)       \
  X(cuMemExportToShareableHandle)        \
  X(cuMemImportFromShareableHandle)

// library() and version() (cuDriverGetVersion: 12040 = 12.4) come from
// runtime_table.
class cuda_driver final : public gpu::runtime_table {
 public:
  // Loads `library` (default "libcuda.so.1") and calls cuInit(0).
  // Errors: no_device when the library is missing ("libcuda.so.1 not found:
  // no NVIDIA driver on this machine (dlopen: ...)"), when a required entry
  // point is missing (a broken or ancient driver; names the symbol), or when
  // cuInit fails (names cuInit and the CUDA error, e.g. CUDA_ERROR_NO_DEVICE).
  // Context: may block (driver initialization can take seconds); allocates.
  // Ownership: the returned table is shared and immutable.
  static result<std::shared_ptr<const cuda_driver>> load(const std::string& library = "libcuda.so.1");

  bool has_vmm() const noexcept { return cuMemCreate != nullptr; }

  // The function table, named as the symbols are (public on purpose: this is
  // a table, not an abstraction; calls go through cuda_checked).
#define XBUF_CUDA_DECLARE_POINTER(name) decltype(&::name) name = nullptr;
  XBUF_CUDA_REQUIRED_FUNCTIONS(XBUF_CUDA_DECLARE_POINTER)
  XBUF_CUDA_VMM_FUNCTIONS(XBUF_CUDA_DECLARE_POINTER)
#undef XBUF_CUDA_DECLARE_POINTER

  cuda_driver() = default;  // load() builds it; public only for make_shared
};

// The driver table's entry points, each returning a status (see Overview).
class cuda_checked final : public gpu::checked_calls<cuda_driver, CUresult, CUDA_SUCCESS, &cuda_error> {
 public:
  using checked_calls::checked_calls;
  XBUF_CUDA_REQUIRED_FUNCTIONS(XBUF_GPU_CHECKED_CALL)
  XBUF_CUDA_VMM_FUNCTIONS(XBUF_GPU_CHECKED_CALL)
};

}  // namespace xbuf
