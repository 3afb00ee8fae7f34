// SPDX-License-Identifier: MIT
#include "backends/hip/hip_backend.hpp"

#include "backends/gpu/gpu_backend.hpp"
#include "backends/hip/hip_prims.hpp"

namespace xbuf {

// Tries config.libraries in order (hip_runtime::load's defaults when empty).
result<std::unique_ptr<backend>> create_hip_backend(const hip_config& config) {
  return gpu::create_gpu_backend(load_hip_runtime(config.libraries),
                                 {.use_vmm = config.use_vmm, .peer_access = config.peer_access});
}

}  // namespace xbuf
