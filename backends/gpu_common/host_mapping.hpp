// SPDX-License-Identifier: MIT
//
// host_mapping.hpp - system memory that can be shared by file descriptor.
//
// Overview
//   The GPU backends hand out host memory (pinned or pageable) that another
//   process can map: an anonymous memfd, mapped shared, optionally bound to a
//   NUMA node. The GPU backend then page-locks it with its runtime
//   (cuMemHostRegister / hipHostRegister); memory from cuMemHostAlloc could
//   not be exported by fd, which is why it is not used.
//
// Rules
//   - The mapping owns its fd and its address range; release() returns both
//     and never fails.
//   - Binding to a node happens before the first touch, so the pages are
//     allocated there (mbind with MPOL_BIND on the shared mapping).
#pragma once

#include <cstddef>
#include <string>

#include "core/result.hpp"

namespace xbuf::gpu {

struct host_mapping {
  void* ptr = nullptr;
  std::size_t size = 0;  // mapped bytes (request rounded up to the page size)
  int fd = -1;
  int numa_node = -1;
};

// Creates and maps `bytes` of memfd memory; numa_node >= 0 binds it.
// Errors: invalid_argument (0 bytes; a node that /sys does not list, naming
// it), out_of_memory (memfd/ftruncate/mmap said ENOMEM), io_error (other
// failures, naming the call and strerror).
// Context: may block in the kernel; allocates.
result<host_mapping> create_host_mapping(std::size_t bytes, int numa_node, const std::string& name);

// Maps an fd another process exported (the mapping takes ownership of `fd`
// on success; on failure the caller still owns it).
// Errors: invalid_argument (fd smaller than offset + size), io_error.
result<host_mapping> map_host_fd(int fd, std::size_t bytes);

// Unmaps and closes. Never fails; a default mapping is a no-op.
void release(host_mapping& m) noexcept;

// True when /sys/devices/system/node/node<N> exists.
bool numa_node_exists(int node) noexcept;

}  // namespace xbuf::gpu
