// SPDX-License-Identifier: MIT
//
// numa_sysfs.hpp - what sysfs says about NUMA nodes and the PCI devices on them.
//
// Overview
//   The GPU backend fills device_info::numa_node from
//   /sys/bus/pci/devices/<address>/numa_node where the runtime does not say,
//   and checks a requested host-memory node against
//   /sys/devices/system/node/node<N> (the GPU backend has no hwloc topology;
//   the host backend does). Addresses come in the canonical form of
//   core/pci_address.hpp (normalize_pci_address).
//
// Rules
//   - Each reads one sysfs entry, never fail and never throw.
#pragma once

#include <string>
#include <vector>

namespace xbuf::gpu {

// The device's NUMA node, or -1 when unknown (no sysfs entry, or the kernel
// reports -1).
int numa_node_of_pci_device(const std::string& address) noexcept;

// True when /sys/devices/system/node/node<N> exists.
bool numa_node_exists(int node) noexcept;

// The nodes /sys/devices/system/node/online lists, ascending; empty when it
// cannot be read or parsed.
std::vector<int> online_numa_nodes() noexcept;

// A kernel node list ("0-1,3" -> {0, 1, 3}; a trailing newline is fine).
// Empty for anything else: a descending range, a negative or non-numeric
// item, a range of more than 4096 nodes.
std::vector<int> parse_node_list(const std::string& text) noexcept;

}  // namespace xbuf::gpu
