// SPDX-License-Identifier: MIT
//
// hip_backend.hpp - the HIP backend: AMD GPUs through the ROCm HIP runtime.
//
// Overview
//   The GPU skeleton (backends/gpu/gpu_backend.hpp: one non-blocking stream
//   per device, "hip-event" fences polled by a thread, software fences
//   waited for by a submitter thread, memfd host memory) over the HIP
//   runtime's primitives (hip_prims.hpp): hipMemcpyAsync (hipMemcpyDefault,
//   unified addressing), host memory page-locked with hipHostRegister.
//
//   Device memory: on a HIP >= 6 runtime whose device reports
//   hipDeviceAttributeVirtualMemoryManagementSupported, hipMemCreate with the
//   POSIX-fd handle type + hipMemAddressReserve/hipMemMap/hipMemSetAccess, so
//   blocks export by fd. Otherwise hipMalloc; such blocks cannot be exported
//   by fd (a HIP IPC handle is 64 opaque bytes, not an fd) and export_fd
//   returns errc::unsupported; caps().export_fd says which case holds.
//
// Rules
//   - libamdhip64 is dlopen()ed (hip_runtime.hpp). A missing runtime, or a
//     runtime that finds no AMD GPU (hipGetDeviceCount -> hipErrorNoDevice,
//     the usual case on a machine with ROCm packages and no GPU), is
//     errc::no_device from the factory, with the call and HIP's message.
//   - HIP's current device is per thread: every call that depends on it runs
//     in a scope that sets it and restores the caller's afterwards.
//   - Errors name the HIP call (hip_error.hpp); fences and lifetimes:
//     gpu_backend.hpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "core/result.hpp"

namespace xbuf {

struct hip_config {
  // Library names tried in order; empty = libamdhip64.so, .so.6, .so.5.
  std::vector<std::string> libraries;
  // Use hipMemCreate & co. where available; false forces hipMalloc.
  bool use_vmm = true;
  // Map each VMM allocation for every peer hipDeviceCanAccessPeer allows.
  bool peer_access = true;
};

// Creates the HIP backend over every HIP device.
// Errors: no_device - no runtime library ("libamdhip64.so not found: ..."),
// hipGetDeviceCount failing (naming the call and the HIP error,
// e.g. "hipGetDeviceCount: hipErrorNoDevice (no ROCm-capable device is
// detected)"), or a count of 0; other runtime failures name their call.
// Context: may block (runtime initialization); allocates.
result<std::unique_ptr<backend>> create_hip_backend(const hip_config& config = {});

}  // namespace xbuf
