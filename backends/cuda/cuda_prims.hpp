// SPDX-License-Identifier: MIT
//
// cuda_prims.hpp - the CUDA driver API as the GPU skeleton's primitives.
//
// Overview
//   Implements gpu/gpu_prim.hpp over cuda_driver's table: "current" is the
//   device's primary context pushed on the calling thread (and popped
//   after), device memory is cuMemCreate & co. with the POSIX-fd handle type
//   where the device supports it, or cuMemAlloc, and host memory is
//   page-locked with cuMemHostRegister(PORTABLE | DEVICEMAP).
//
// Rules
//   - As gpu_prim.hpp. The table is shared (it outlives every backend, block
//     and fence that holds the runtime).
#pragma once

#include <memory>
#include <string>

#include "backends/cuda/cuda_driver.hpp"
#include "backends/gpu/gpu_prim.hpp"

namespace xbuf {

// Loads the driver (cuda_driver::load) and wraps it. Errors: load()'s.
// Context: may block (cuInit); allocates.
result<std::shared_ptr<const gpu::gpu_runtime>> load_cuda_runtime(const std::string& library);

}  // namespace xbuf
