// SPDX-License-Identifier: MIT
//
// cuda_backend.hpp - the CUDA backend: NVIDIA GPUs through the driver API.
//
// Overview
//   The GPU skeleton (backends/gpu/gpu_backend.hpp: streams, event fences,
//   the poller, deferred submission, copies, export/import) over the CUDA
//   driver's primitives (cuda_prims.hpp).
//
//   Device memory comes from the virtual memory management calls: cuMemCreate
//   (with the POSIX-fd handle type where the device supports it, so a block
//   can be exported to another process), cuMemAddressReserve, cuMemMap and
//   cuMemSetAccess for the owning device and every peer that can reach it.
//   Sizes are rounded up to the allocation granularity. Where VMM is missing
//   (old driver, device without it, or cuda_config::use_vmm = false) memory
//   comes from cuMemAlloc and cannot be exported.
//
//   Host memory is memfd memory mapped shared (so it can be exported by fd),
//   page-locked with cuMemHostRegister(PORTABLE) when pinned. Fences are
//   "cuda-event".
//
// Rules
//   - libcuda.so.1 is dlopen()ed (cuda_driver.hpp); nothing here needs it at
//     link time. A missing library or device is errc::no_device from the
//     factory.
//   - Driver calls run with the device's primary context pushed on the
//     calling thread and popped afterwards, so the application's own current
//     context is left as it was.
//   - Every driver error becomes an xbuf::error naming the call and its
//     arguments (cuda_error.hpp). Fences and lifetimes: gpu_backend.hpp.
#pragma once

#include <memory>
#include <string>

#include "backends/backend.hpp"
#include "core/result.hpp"

namespace xbuf {

struct cuda_config {
  // The driver library to dlopen (tests point this at a name that does not exist).
  std::string library = "libcuda.so.1";
  // Use cuMemCreate & co. where the device supports them; false forces
  // cuMemAlloc (no fd export).
  bool use_vmm = true;
  // Map each device allocation for every peer that cuDeviceCanAccessPeer
  // allows, so peer copies and kernels can use it directly.
  bool peer_access = true;
};

// Creates the CUDA backend over every CUDA device of the machine.
// Errors: no_device - libcuda.so.1 missing ("libcuda.so.1 not found: no
// NVIDIA driver on this machine (dlopen: ...)"), cuInit failing, or no
// device (naming the call and the CUDA error); unsupported - a device
// without unified addressing; any other driver failure while setting up
// contexts and streams, naming the call.
// Context: may block for seconds (driver initialization); allocates.
// Ownership: the caller owns the backend.
result<std::unique_ptr<backend>> create_cuda_backend(const cuda_config& config = {});

}  // namespace xbuf
