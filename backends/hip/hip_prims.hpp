// SPDX-License-Identifier: MIT
//
// hip_prims.hpp - the ROCm HIP runtime as the GPU skeleton's primitives.
//
// Overview
//   Implements gpu/gpu_prim.hpp over hip_runtime's table. HIP has no
//   contexts to retain: "current" is HIP's per-thread device, set for the
//   scope and put back afterwards. Device memory is hipMemCreate with the
//   POSIX-fd handle type on HIP >= 6 runtimes whose device reports
//   hipDeviceAttributeVirtualMemoryManagementSupported (ROCm 6 structure
//   layouts, hip_vmm_abi), hipMalloc otherwise; host memory is page-locked
//   with hipHostRegister(Portable | Mapped).
//
// Rules
//   - As gpu_prim.hpp. Device handles are ordinals (device_ref::native ==
//     ordinal); addresses and VMM handles are pointers carried as integers.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/gpu/gpu_prim.hpp"
#include "backends/hip/hip_runtime.hpp"

namespace xbuf {

// Loads the runtime (hip_runtime::load) and wraps it. Errors: load()'s.
// Context: may block (runtime initialization); allocates.
result<std::shared_ptr<const gpu::gpu_runtime>> load_hip_runtime(const std::vector<std::string>& libraries);

}  // namespace xbuf
