// SPDX-License-Identifier: MIT
//
// cuda_error.hpp - CUresult to xbuf::error, in one place.
//
// Overview
//   Every driver call's result goes through cuda_error(), which names the call
//   and its arguments, then the CUDA error name and description:
//     "cuMemCreate(device 1, 2097152 bytes): CUDA_ERROR_OUT_OF_MEMORY (out of memory)"
//   The code is chosen by cuda_errc(): what the caller can do about it
//   (out of memory -> evict and retry; no device -> pick another backend;
//   a sticky launch/ECC error -> the device is lost).
//
// Rules
//   - Names and descriptions come from cuGetErrorName/cuGetErrorString when a
//     driver is loaded; without one (or for a code the driver does not know)
//     a built-in table names the common codes, so errors read the same in
//     tests without a GPU.
//   - Pure functions: thread-safe, no allocation beyond the message.
#pragma once

#include <cuda.h>

#include <string>
#include <string_view>

#include "core/result.hpp"

namespace xbuf {

class cuda_driver;

// The xbuf code for a driver result. CUDA_SUCCESS maps to errc::ok.
errc cuda_errc(CUresult rc) noexcept;

// "CUDA_ERROR_OUT_OF_MEMORY" from the built-in table; "CUDA_ERROR_<n>" for
// codes it does not list.
std::string cuda_result_name(CUresult rc);

// "call: NAME (description)" with code cuda_errc(rc). `driver` may be null.
// Precondition: rc != CUDA_SUCCESS.
error cuda_error(const cuda_driver* driver, CUresult rc, std::string_view call);

// The negative errno a fence carries when the work behind it failed with rc.
int cuda_fence_errno(CUresult rc) noexcept;

}  // namespace xbuf
