// SPDX-License-Identifier: MIT
//
// gpu_memory.hpp - the memory blocks of a GPU backend.
//
// Overview
//   Two kinds of block, each releasing its memory in its destructor:
//   - device_block: device memory, either a VMM allocation (vmm_create +
//     vmm_reserve + vmm_map + vmm_set_access for the owning device and its
//     peers; also what an import makes) or linear memory (mem_alloc, where
//     VMM is missing or disabled; not exportable by fd);
//   - host memory is a detail::memfd_block (backends/detail/memfd_block.hpp,
//     the memfd code the host and sim backends use) whose owner is the
//     registering device, page-locked with host_register when pinned.
//     cuMemHostAlloc/hipHostMalloc memory could not be exported by fd, which
//     is why it is not used.
//   Every block's device_ptr is the address copies use (unified addressing:
//   for host blocks it is the host address).
//
// Rules
//   - Destructors never fail and never block on a fence; they make the
//     owning device current (a block may outlive its backend) and skip the
//     runtime when that fails.
//   - Allocation errors name the call, device and size; out of memory also
//     says how much the device has left (mem_info).
//   - Every import takes ownership of exported.fd, on success and on failure.
#pragma once

#include <cstddef>
#include <memory>

#include "backends/backend.hpp"
#include "backends/gpu/gpu_device.hpp"
#include "backends/gpu/gpu_prim.hpp"
#include "core/result.hpp"

namespace xbuf::gpu {

struct device_block final : memory_block {
  std::shared_ptr<gpu_device> owner;
  bool vmm = false;           // VMM allocation (else linear memory at base)
  vmm_handle handle = 0;      // VMM: the physical allocation; 0 = none
  device_address base = 0;    // VMM: start of the reserved range (device_ptr may be past it, for imports)
  std::size_t mapped = 0;     // VMM: bytes reserved and mapped at base
  bool exportable = false;    // VMM allocation with the POSIX-fd handle type
  ~device_block() override;
};

// Rounded up to the device's granularity. VMM or linear, as the device uses.
result<memory_block_ptr> allocate_device(const std::shared_ptr<gpu_device>& dev, std::size_t bytes);

// registrar: the device that page-locks pinned memory (any: the
// registration is portable) and owns every host block. numa_node >= 0 binds
// the pages there. Errors: invalid_argument (a node this machine lacks,
// naming it), out_of_memory, io_error, the registration's error.
result<memory_block_ptr> allocate_host(const std::shared_ptr<gpu_device>& registrar, std::size_t bytes,
                                       bool pinned, int numa_node);

// A new fd for the device memory behind `span`. Errors: unsupported (linear
// memory, or VMM memory without the POSIX-fd handle type), io_error.
result<exported_memory> export_device(const device_block& block, const memory_span& span);

// Device memory another process (or this one) exported, mapped on dev.
// Errors: unsupported (dev cannot import fds), invalid_argument (not a
// memory handle), the mapping's errors.
result<memory_block_ptr> import_device(const std::shared_ptr<gpu_device>& dev, const exported_memory& exported);
// Host memory, registered again when it was pinned. Errors: as
// detail::import_block, the registration's error.
result<memory_block_ptr> import_host(const std::shared_ptr<gpu_device>& registrar, const exported_memory& exported);

}  // namespace xbuf::gpu
