// SPDX-License-Identifier: MIT
//
// hip_error.hpp - hipError_t to xbuf::error, in one place.
//
// Overview
//   "hipGetDeviceCount: hipErrorNoDevice (no ROCm-capable device is detected)"
//   - the call, then hipGetErrorName and hipGetErrorString (or a built-in
//   table when no runtime is loaded). The code follows the CUDA mapping:
//   no device -> no_device, out of memory -> out_of_memory, sticky faults ->
//   device_lost.
//
// Rules
//   - Pure functions: thread-safe.
#pragma once

#include <hip/hip_runtime_api.h>

#include <string>
#include <string_view>

#include "core/result.hpp"

namespace xbuf {

class hip_runtime;

errc hip_errc(hipError_t rc) noexcept;
std::string hip_result_name(hipError_t rc);
// Precondition: rc != hipSuccess. `runtime` may be null.
error hip_error(const hip_runtime* runtime, hipError_t rc, std::string_view call);
// The negative errno a fence carries when the work behind it failed with rc.
int hip_fence_errno(hipError_t rc) noexcept;

}  // namespace xbuf
