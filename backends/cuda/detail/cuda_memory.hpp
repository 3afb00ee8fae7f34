// SPDX-License-Identifier: MIT
//
// detail/cuda_memory.hpp - the CUDA backend's memory blocks (internal).
//
// Overview
//   Three kinds of block, each releasing its memory in its destructor:
//   - vmm_block: cuMemCreate + cuMemAddressReserve + cuMemMap (+ cuMemSetAccess),
//     also used for imports (cuMemImportFromShareableHandle);
//   - linear_block: cuMemAlloc, where VMM is not available (not exportable);
//   - host_block: memfd memory, page-locked with cuMemHostRegister(PORTABLE)
//     when pinned; exportable by dup() of its fd.
//   Every block sets device_ptr to the address copies use (unified
//   addressing: for host blocks it is the host address).
//
// Rules
//   - Destructors never fail and never block on a fence; they push the
//     owning device's context (a block may outlive its backend).
//   - Allocation errors name the call, device and size; out of memory also
//     says how much the device has left (cuMemGetInfo).
#pragma once

#include <cuda.h>

#include <cstddef>
#include <memory>

#include "backends/backend.hpp"
#include "backends/cuda/detail/cuda_device.hpp"
#include "backends/gpu_common/host_mapping.hpp"
#include "core/result.hpp"

namespace xbuf::cuda_detail {

// Base of every block the CUDA backend makes: how copy() recognises memory
// it can reach.
struct cuda_block : memory_block {
  std::shared_ptr<cuda_device> owner;  // device for device memory; the registering device for host memory
};

struct vmm_block final : cuda_block {
  CUmemGenericAllocationHandle handle = 0;
  CUdeviceptr base = 0;       // start of the reserved range (device_ptr may be past it, for imports)
  std::size_t mapped = 0;     // bytes reserved and mapped at base
  bool exportable = false;    // created with the POSIX-fd handle type
  ~vmm_block() override;
};

struct linear_block final : cuda_block {
  ~linear_block() override;
};

struct host_block final : cuda_block {
  gpu::host_mapping mapping;  // host_ptr lies inside it (imports may start at an offset)
  bool registered = false;
  ~host_block() override;
};

result<memory_block_ptr> allocate_vmm(const std::shared_ptr<cuda_device>& dev, std::size_t bytes);
result<memory_block_ptr> allocate_linear(const std::shared_ptr<cuda_device>& dev, std::size_t bytes);
// registrar: the device whose context page-locks the memory (any device:
// the registration is PORTABLE); null for pageable memory.
result<memory_block_ptr> allocate_host(const std::shared_ptr<cuda_device>& registrar, std::size_t bytes,
                                       bool pinned, int numa_node);

// A new fd for the block behind `span`. Errors: unsupported (a block without
// an fd-capable handle), io_error (the export or dup failed).
result<exported_memory> export_block(const memory_span& span);

// Imports device memory exported by export_block in another process (or
// this one). Takes ownership of exported.fd in every case.
result<memory_block_ptr> import_device(const std::shared_ptr<cuda_device>& dev, const exported_memory& exported);
result<memory_block_ptr> import_host(const std::shared_ptr<cuda_device>& registrar, const exported_memory& exported);

}  // namespace xbuf::cuda_detail
