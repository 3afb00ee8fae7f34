// SPDX-License-Identifier: MIT
//
// detail/hip_memory.hpp - the HIP backend's memory blocks (internal).
//
// Overview
//   As detail/cuda_memory.hpp: vmm_block (hipMemCreate path, HIP >= 6, also
//   imports), malloc_block (hipMalloc, not exportable by fd), host_block
//   (memfd, hipHostRegister(Portable) when pinned). device_ptr is the
//   address hipMemcpyAsync takes.
#pragma once

#include <cstddef>
#include <memory>

#include "backends/backend.hpp"
#include "backends/gpu_common/host_mapping.hpp"
#include "backends/hip/detail/hip_device.hpp"
#include "core/result.hpp"

namespace xbuf::hip_detail {

struct hip_block : memory_block {
  std::shared_ptr<hip_device> owner;
};

struct vmm_block final : hip_block {
  hip_vmm_abi::handle handle = nullptr;
  void* base = nullptr;
  std::size_t mapped = 0;
  ~vmm_block() override;
};

struct malloc_block final : hip_block {
  ~malloc_block() override;
};

struct host_block final : hip_block {
  gpu::host_mapping mapping;
  bool registered = false;
  ~host_block() override;
};

result<memory_block_ptr> allocate_vmm(const std::shared_ptr<hip_device>& dev, std::size_t bytes);
result<memory_block_ptr> allocate_malloc(const std::shared_ptr<hip_device>& dev, std::size_t bytes);
result<memory_block_ptr> allocate_host(const std::shared_ptr<hip_device>& registrar, std::size_t bytes,
                                       bool pinned, int numa_node);
result<exported_memory> export_block(const memory_span& span);
// Both take ownership of exported.fd in every case.
result<memory_block_ptr> import_device(const std::shared_ptr<hip_device>& dev, const exported_memory& exported);
result<memory_block_ptr> import_host(const std::shared_ptr<hip_device>& registrar, const exported_memory& exported);

}  // namespace xbuf::hip_detail
