// SPDX-License-Identifier: MIT
#include "backends/cuda/cuda_backend.hpp"

#include "backends/cuda/cuda_prims.hpp"
#include "backends/gpu/gpu_backend.hpp"

namespace xbuf {

result<std::unique_ptr<backend>> create_cuda_backend(const cuda_config& config) {
  const gpu::gpu_backend_config skeleton{.use_vmm = config.use_vmm, .peer_access = config.peer_access};
  return gpu::create_gpu_backend(load_cuda_runtime(config.library), skeleton);
}

}  // namespace xbuf
