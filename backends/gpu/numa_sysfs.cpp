// SPDX-License-Identifier: MIT
#include "backends/gpu/numa_sysfs.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <sstream>

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

std::vector<int> online_numa_nodes() noexcept {
  try {
    std::ifstream in("/sys/devices/system/node/online");
    std::string text;
    if (!std::getline(in, text)) return {};
    return parse_node_list(text);
  } catch (...) {
    return {};
  }
}

std::vector<int> parse_node_list(const std::string& text) noexcept {
  try {
    std::vector<int> nodes;
    std::istringstream list(text.substr(0, text.find('\n')));
    // One whole number, digits only (stoi would take "+1" and " 1").
    auto number = [](const std::string& s) {
      if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) return -1;
      return std::stoi(s);
    };
    for (std::string item; std::getline(list, item, ',');) {
      const auto dash = item.find('-');
      const int first = number(item.substr(0, dash));
      const int last = dash == std::string::npos ? first : number(item.substr(dash + 1));
      if (first < 0 || last < first || last - first >= 4096) return {};
      for (int n = first; n <= last; ++n) nodes.push_back(n);
    }
    std::sort(nodes.begin(), nodes.end());
    nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
    return nodes;
  } catch (...) {
    return {};  // out of memory
  }
}

}  // namespace xbuf::gpu
