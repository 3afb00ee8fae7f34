// SPDX-License-Identifier: MIT
//
// pci_address.hpp - PCI addresses as runtimes print them, made comparable.
//
// Overview
//   cuDeviceGetPCIBusId gives "0000:3B:00.0" (sometimes with an 8-digit
//   domain), hipDeviceGetPCIBusId "0000:3b:00.0"; hwloc and sysfs use
//   "0000:3b:00.0". xbuf keeps one form everywhere: 4-digit domain, lower
//   case, "dddd:bb:dd.f", so that p2p/ can match a backend's devices to the
//   topology by string.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace xbuf::gpu {

// The normalized address, or nullopt when `raw` is not domain:bus:device.function
// (domain optional; hex fields; surrounding blanks and a trailing NUL ignored).
std::optional<std::string> normalize_pci_address(std::string_view raw);

// The NUMA node sysfs reports for a normalized address
// (/sys/bus/pci/devices/<addr>/numa_node), -1 when unknown or absent.
// Context: reads a file.
int numa_node_of_pci_device(const std::string& address) noexcept;

}  // namespace xbuf::gpu
