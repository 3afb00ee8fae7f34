// SPDX-License-Identifier: MIT
#include "backends/gpu_common/pci_numa.hpp"

#include <fstream>

namespace xbuf::gpu {

int numa_node_of_pci_device(const std::string& address) noexcept {
  try {
    std::ifstream in("/sys/bus/pci/devices/" + address + "/numa_node");
    int node = -1;
    if (in >> node) return node < 0 ? -1 : node;
  } catch (...) {
  }
  return -1;
}

}  // namespace xbuf::gpu
