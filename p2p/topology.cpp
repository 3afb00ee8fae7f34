// SPDX-License-Identifier: MIT
#include "p2p/topology.hpp"

#include <algorithm>
#include <cassert>
#include <string_view>

namespace xbuf::p2p {

namespace {

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// OS devices that only exist for a compute-capable GPU: a BMC's VGA has none.
bool has_compute_os_device(const std::vector<std::string>& os_devices) {
  return std::any_of(os_devices.begin(), os_devices.end(), [](const std::string& n) {
    return starts_with(n, "cuda") || starts_with(n, "nvml") || starts_with(n, "rsmi") ||
           starts_with(n, "opencl") || starts_with(n, "ze");
  });
}

int kind_rank(device_kind k) {
  switch (k) {
    case device_kind::gpu: return 0;
    case device_kind::nic: return 1;
    default: return 2;
  }
}

}  // namespace

device_kind classify(std::uint16_t class_id, std::uint16_t vendor_id,
                     const std::vector<std::string>& os_devices) {
  const unsigned base = class_id >> 8;
  const unsigned sub = class_id & 0xffu;
  const bool compute = has_compute_os_device(os_devices);
  constexpr std::uint16_t nvidia = 0x10de;
  if (base == 0x03) {
    // 3D controllers and "display, other" (AMD Instinct) are compute GPUs; a
    // VGA controller is one only if NVIDIA made it or a compute runtime sees
    // it, so a server's BMC display (Matrox, ASPEED, ATI ES1000) is not a GPU.
    if (sub == 0x02 || sub == 0x80 || vendor_id == nvidia || compute) {
      return device_kind::gpu;
    }
    return device_kind::other;
  }
  if (base == 0x02) return device_kind::nic;
  if (class_id == 0x0108) return device_kind::nvme;
  if (class_id == 0x0b40 || base == 0x12) {
    // MI300A APUs are processing accelerators (12xx) with ROCm SMI devices.
    return compute ? device_kind::gpu : device_kind::accelerator;
  }
  if (base == 0x06 && vendor_id == nvidia) return device_kind::nvswitch;
  return device_kind::other;
}

const char* to_string(device_kind kind) noexcept {
  switch (kind) {
    case device_kind::gpu: return "gpu";
    case device_kind::nic: return "nic";
    case device_kind::nvme: return "nvme";
    case device_kind::accelerator: return "accelerator";
    case device_kind::nvswitch: return "nvswitch";
    case device_kind::other: return "other";
  }
  return "other";
}

const char* to_string(acs_state state) noexcept {
  switch (state) {
    case acs_state::unknown: return "unknown";
    case acs_state::absent: return "absent";
    case acs_state::no_redirect: return "no_redirect";
    case acs_state::redirect: return "redirect";
  }
  return "unknown";
}

int topology::add_host_bridge(std::uint32_t domain, std::uint8_t root_bus,
                              std::uint8_t subordinate_bus, std::vector<unsigned> numa_nodes,
                              std::string cpus) {
  pci_node n;
  n.kind = node_kind::host_bridge;
  n.address = pci_address{domain, root_bus, 0, 0};
  n.secondary_bus = root_bus;
  n.subordinate_bus = subordinate_bus;
  n.numa_nodes = std::move(numa_nodes);
  n.cpus = std::move(cpus);
  // A host bridge is not a PCI function: ACS does not apply to it.
  n.acs = acs_state::absent;
  nodes_.push_back(std::move(n));
  return static_cast<int>(nodes_.size() - 1);
}

int topology::add_bridge(int parent, pci_address address, std::uint16_t vendor_id,
                         std::uint16_t device_id, std::uint8_t secondary_bus,
                         std::uint8_t subordinate_bus) {
  assert(parent >= 0 && static_cast<std::size_t>(parent) < nodes_.size());
  assert(nodes_[static_cast<std::size_t>(parent)].kind != node_kind::function);
  pci_node n;
  n.kind = node_kind::bridge;
  n.parent = parent;
  n.address = address;
  n.vendor_id = vendor_id;
  n.device_id = device_id;
  n.class_id = 0x0604;
  n.secondary_bus = secondary_bus;
  n.subordinate_bus = subordinate_bus;
  // I/O objects inherit the locality of their host bridge.
  n.numa_nodes = nodes_[static_cast<std::size_t>(parent)].numa_nodes;
  n.cpus = nodes_[static_cast<std::size_t>(parent)].cpus;
  nodes_.push_back(std::move(n));
  return static_cast<int>(nodes_.size() - 1);
}

int topology::add_function(int parent, pci_address address, std::uint16_t vendor_id,
                           std::uint16_t device_id, std::uint16_t class_id,
                           std::vector<std::string> os_devices, std::string model) {
  assert(parent >= 0 && static_cast<std::size_t>(parent) < nodes_.size());
  assert(nodes_[static_cast<std::size_t>(parent)].kind != node_kind::function);
  pci_node n;
  n.kind = node_kind::function;
  n.parent = parent;
  n.address = address;
  n.vendor_id = vendor_id;
  n.device_id = device_id;
  n.class_id = class_id;
  n.kind_of_device = classify(class_id, vendor_id, os_devices);
  n.os_devices = std::move(os_devices);
  n.model = std::move(model);
  n.numa_nodes = nodes_[static_cast<std::size_t>(parent)].numa_nodes;
  n.cpus = nodes_[static_cast<std::size_t>(parent)].cpus;
  nodes_.push_back(std::move(n));
  return static_cast<int>(nodes_.size() - 1);
}

void topology::add_link(int a, int b, link_kind kind, unsigned count) {
  assert(a >= 0 && b >= 0 && a != b);
  links_.push_back(device_link{a, b, kind, count});
}

void topology::classify_devices() {
  for (auto& n : nodes_) {
    if (n.kind == node_kind::function && n.kind_of_device != device_kind::nvswitch) {
      n.kind_of_device = classify(n.class_id, n.vendor_id, n.os_devices);
    }
  }
}

std::optional<int> topology::find(const pci_address& address) const {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].kind != node_kind::host_bridge && nodes_[i].address == address) {
      return static_cast<int>(i);
    }
  }
  return std::nullopt;
}

std::vector<int> topology::chain(int index) const {
  std::vector<int> out;
  for (int i = index; i >= 0 && node(i).kind != node_kind::host_bridge; i = node(i).parent) {
    out.push_back(i);
  }
  return out;
}

int topology::host_bridge_of(int index) const {
  int i = index;
  while (node(i).parent >= 0) i = node(i).parent;
  return i;
}

std::vector<int> topology::functions() const {
  std::vector<int> out;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i].kind == node_kind::function) out.push_back(static_cast<int>(i));
  }
  std::sort(out.begin(), out.end(),
            [this](int a, int b) { return node(a).address < node(b).address; });
  return out;
}

std::vector<int> topology::dma_devices() const {
  std::vector<int> out;
  for (int i : functions()) {
    switch (node(i).kind_of_device) {
      case device_kind::gpu:
      case device_kind::nic:
      case device_kind::nvme:
      case device_kind::accelerator:
        out.push_back(i);
        break;
      case device_kind::nvswitch:
      case device_kind::other:
        break;
    }
  }
  std::stable_sort(out.begin(), out.end(), [this](int a, int b) {
    return kind_rank(node(a).kind_of_device) < kind_rank(node(b).kind_of_device);
  });
  return out;
}

}  // namespace xbuf::p2p
