// SPDX-License-Identifier: MIT
#include "backends/gpu/numa_sysfs.hpp"

#include <sys/stat.h>

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

bool numa_node_exists(int node) noexcept {
  if (node < 0) return false;
  try {
    struct stat st {};
    const std::string path = "/sys/devices/system/node/node" + std::to_string(node);
    return ::stat(path.c_str(), &st) == 0;
  } catch (...) {
    return false;  // the path string could not be allocated
  }
}

}  // namespace xbuf::gpu
