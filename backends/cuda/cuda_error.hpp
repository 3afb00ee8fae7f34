// SPDX-License-Identifier: MIT
//
// cuda_error.hpp - CUresult to xbuf::error, in one place.
//
// Overview
//   Every driver call's result goes through cuda_error() (cuda_checked does
//   it for every entry point), which names the call and its arguments, then
//   the CUDA error name and description:
//     "cuMemCreate(device 1, 2097152 bytes): CUDA_ERROR_OUT_OF_MEMORY (out of memory)"
//   cuda_codes is the table behind it (gpu/runtime_error.hpp): the errc of
//   each code, names for tests without a driver, the fence errno.
//
// Rules
//   - Names and descriptions come from cuGetErrorName/cuGetErrorString when a
//     driver is loaded; without one (or for a code the driver does not know)
//     the table names the common codes, so errors read the same in tests
//     without a GPU. Unlisted codes are "CUDA_ERROR_<n>", errc::io_error.
//   - Pure functions: thread-safe, no allocation beyond the message.
#pragma once

#include <cuda.h>

#include <string_view>

#include "backends/gpu/runtime_error.hpp"
#include "core/result.hpp"

namespace xbuf {

class cuda_driver;

// cuda_codes.code(rc), .name(rc), .fence_errno_of(rc); CUDA_SUCCESS -> errc::ok.
extern const gpu::runtime_codes<CUresult> cuda_codes;

// "call: NAME (description)" with code cuda_codes.code(rc). `driver` may be
// null. Precondition: rc != CUDA_SUCCESS.
error cuda_error(const cuda_driver* driver, CUresult rc, std::string_view call);

}  // namespace xbuf
