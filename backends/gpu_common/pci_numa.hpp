// SPDX-License-Identifier: MIT
//
// pci_numa.hpp - the NUMA node a PCI device hangs off, from sysfs.
//
// Overview
//   The GPU backends fill device_info::numa_node from
//   /sys/bus/pci/devices/<address>/numa_node. Addresses come in the canonical
//   form of core/pci_address.hpp (normalize_pci_address).
#pragma once

#include <string>

namespace xbuf::gpu {

// The device's NUMA node, or -1 when unknown (no sysfs entry, or the kernel
// reports -1). Context: reads one sysfs file; never fails.
int numa_node_of_pci_device(const std::string& address) noexcept;

}  // namespace xbuf::gpu
