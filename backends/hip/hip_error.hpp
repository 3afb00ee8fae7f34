// SPDX-License-Identifier: MIT
//
// hip_error.hpp - hipError_t to xbuf::error, in one place.
//
// Overview
//   "hipGetDeviceCount: hipErrorNoDevice (no ROCm-capable device is detected)"
//   - the call, then hipGetErrorName and hipGetErrorString (or the built-in
//   table, hip_codes, when no runtime is loaded), with the errc the table
//   gives the code (gpu/runtime_error.hpp). Unlisted codes read
//   "hipError<n>" and are errc::io_error.
//
// Rules
//   - Pure functions: thread-safe.
#pragma once

#include <hip/hip_runtime_api.h>

#include <string_view>

#include "backends/gpu/runtime_error.hpp"
#include "core/result.hpp"

namespace xbuf {

class hip_runtime;

extern const gpu::runtime_codes<hipError_t> hip_codes;  // hipSuccess -> errc::ok
// Precondition: rc != hipSuccess. `runtime` may be null.
error hip_error(const hip_runtime* runtime, hipError_t rc, std::string_view call);

}  // namespace xbuf
