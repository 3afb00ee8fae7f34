// SPDX-License-Identifier: MIT
//
// cuda_backend.hpp - the CUDA backend: NVIDIA GPUs through the driver API.
//
// Overview
//   Device memory comes from the virtual memory management calls: cuMemCreate
//   (with the POSIX-fd handle type where the device supports it, so a block
//   can be exported to another process), cuMemAddressReserve, cuMemMap and
//   cuMemSetAccess for the owning device and every peer that can reach it.
//   Sizes are rounded up to the allocation granularity. Where VMM is missing
//   (old driver, device without it, or cuda_config::use_vmm = false) memory
//   comes from cuMemAlloc and cannot be exported.
//
//   Host memory is memfd memory mapped shared (so it can be exported by fd),
//   page-locked with cuMemHostRegister(PORTABLE) when pinned.
//
//   Each device has one dedicated non-blocking stream; copies are
//   cuMemcpyAsync on it (unified addressing: the driver tells host from
//   device pointers) and each returns an event fence ("cuda-event"): an
//   event recorded after the copy, signaled by a poller thread. A copy waits
//   for this backend's event fences on the GPU (cuStreamWaitEvent); any other
//   fence is waited for by a submitter thread, which enqueues the copy once
//   the fence signaled - copy() itself never blocks.
//
// Rules
//   - libcuda.so.1 is dlopen()ed (cuda_driver.hpp); nothing here needs it at
//     link time. A missing library or device is errc::no_device from the
//     factory.
//   - Driver calls run with the device's primary context pushed on the
//     calling thread and popped afterwards, so the application's own current
//     context is left as it was.
//   - Every driver error becomes an xbuf::error naming the call and its
//     arguments (cuda_error.hpp). An asynchronous failure shows as the copy
//     fence's error: -EIO, or -ENODEV when the device was lost.
//   - Blocks and fences keep the device state (context, stream) alive, so
//     they may outlive the backend. Destroying the backend cancels copies
//     still waiting for software fences (-ECANCELED) and waits for the
//     queued GPU work to finish.
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
