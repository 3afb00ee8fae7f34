// SPDX-License-Identifier: MIT
//
// topology.hpp - the PCI tree the p2p rules work on.
//
// Overview
//   A topology is a forest of PCI nodes: one root per host bridge (a root
//   bus), PCI-to-PCI bridges below it (Root Ports, switch upstream and
//   downstream ports), and PCI functions as leaves. Each node carries what the
//   rules need: ids, class, NUMA locality, OS device names (cuda0, nvml0,
//   rsmi0, mlx5_0, nvme0n1), ACS state, plus machine-wide facts (CPU vendor
//   and family, architecture) and the NVLink/xGMI links known between devices.
//
//   It is filled either by hwloc (hwloc_loader.hpp: the live machine or an
//   XML file, optionally enriched with libpciaccess details) or by hand
//   through the add_* builders, so the rules in rules.hpp are testable on
//   small trees without hwloc.
//
// Rules
//   - Node indices are stable once added; a parent is always added before its
//     children, so parent < child for every node.
//   - A topology is immutable after loading; const member functions may be
//     called from any number of threads at once. The add_* builders and
//     set_* mutators are for the loader and tests only (no locking inside).
//   - Facts the input does not carry stay "unknown" (acs_state::unknown,
//     empty numa list, cpu vendor ""), never a guess; the rules turn them into
//     an `unknown` verdict or a reason that says what was assumed.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/pci_address.hpp"

namespace xbuf::p2p {

enum class node_kind : std::uint8_t {
  host_bridge,  // a root bus; not a PCI function itself
  bridge,       // PCI-to-PCI bridge: Root Port, switch port
  function,     // an endpoint PCI function
};

// What a function is, for the matrices and for choosing DMA-capable devices.
enum class device_kind : std::uint8_t {
  gpu,          // 3D/VGA/display controller of a compute vendor, or with a compute OS device
  nic,          // network or InfiniBand controller (class 02xx)
  nvme,         // NVMe storage (class 0108)
  accelerator,  // co-processor (0b40) or processing accelerator (12xx) that is not a GPU
  nvswitch,     // NVIDIA NVSwitch (bridge-class function of vendor 10de)
  other,        // chipset functions, BMC display, SATA, ...
};

// ACS (Access Control Services) P2P redirect state of one node, as
// pci_bridge_has_acs_redir() in Linux sees it.
enum class acs_state : std::uint8_t {
  unknown,      // not readable (XML input, no root, no extended config space)
  absent,       // readable, and the node has no ACS capability: no redirect
  no_redirect,  // ACS present; RR, CR and EC are all clear
  redirect,     // ACS present and one of P2P Request/Completion Redirect or Egress Control set
};

enum class link_kind : std::uint8_t { nvlink, xgmi };

struct pci_node {
  node_kind kind = node_kind::function;
  int parent = -1;  // index of the parent node; -1 for host bridges

  // Bridges and functions: their own address. Host bridges: domain and root
  // bus only (device/function 0, meaningless).
  pci_address address{};
  // Bridges and host bridges: the bus range below them.
  std::uint8_t secondary_bus = 0;
  std::uint8_t subordinate_bus = 0;

  std::uint16_t vendor_id = 0;
  std::uint16_t device_id = 0;
  std::uint16_t class_id = 0;  // base class << 8 | subclass (0x0302 = 3D controller)
  device_kind kind_of_device = device_kind::other;

  std::string model;                    // "Tesla V100-SXM3-32GB-H" where the input names it
  std::vector<std::string> os_devices;  // "nvml0", "cuda0", "mlx5_0", ...

  // Locality: the NUMA nodes and CPUs of the nearest non-I/O ancestor.
  std::vector<unsigned> numa_nodes;  // empty: unknown
  std::string cpus;                  // hwloc list syntax "0-23,48-71"; empty: unknown

  acs_state acs = acs_state::unknown;
};

// A known NVLink or xGMI connection between two function nodes, or between a
// function and an NVSwitch function.
struct device_link {
  int a = -1;
  int b = -1;
  link_kind kind = link_kind::nvlink;
  unsigned count = 0;  // bonded links; 0 = present but count unknown (xGMI hops)
};

struct cpu_info {
  std::string architecture;        // "x86_64", "ppc64le", "aarch64"; empty: unknown
  std::string vendor;              // "AuthenticAMD", "GenuineIntel"; empty: unknown
  std::optional<unsigned> family;  // CPUID family number (23 = 0x17 = Zen)
};

class topology {
 public:
  // --- building (loader and tests) --------------------------------------
  // Each returns the new node's index. Context: allocates; no locking.
  int add_host_bridge(std::uint32_t domain, std::uint8_t root_bus, std::uint8_t subordinate_bus,
                      std::vector<unsigned> numa_nodes = {}, std::string cpus = {});
  // `parent` must be an existing host bridge or bridge index (asserted).
  int add_bridge(int parent, pci_address address, std::uint16_t vendor_id,
                 std::uint16_t device_id, std::uint8_t secondary_bus,
                 std::uint8_t subordinate_bus);
  int add_function(int parent, pci_address address, std::uint16_t vendor_id,
                   std::uint16_t device_id, std::uint16_t class_id,
                   std::vector<std::string> os_devices = {}, std::string model = {});
  // Records an NVLink/xGMI connection between two existing nodes.
  void add_link(int a, int b, link_kind kind, unsigned count);

  void set_acs(int node, acs_state state) { nodes_.at(static_cast<std::size_t>(node)).acs = state; }
  void set_device_kind(int node, device_kind kind) {
    nodes_.at(static_cast<std::size_t>(node)).kind_of_device = kind;
  }
  void set_cpu(cpu_info cpu) { cpu_ = std::move(cpu); }
  // Whether every function on each root bus is present (live machine, or an
  // XML exported with --whole-io). Default lstopo exports drop most
  // root-bus functions, which the host-bridge allow-list check needs.
  void set_root_buses_complete(bool complete) { root_buses_complete_ = complete; }
  void set_source(std::string source) { source_ = std::move(source); }
  // The machine's NUMA nodes (OS indexes, ascending); empty: unknown.
  void set_numa_nodes(std::vector<unsigned> nodes) { numa_nodes_ = std::move(nodes); }
  // Re-derives kind_of_device of every function (after OS devices change).
  void classify_devices();

  // --- queries ------------------------------------------------------------
  [[nodiscard]] const std::vector<pci_node>& nodes() const noexcept { return nodes_; }
  [[nodiscard]] const pci_node& node(int index) const { return nodes_.at(static_cast<std::size_t>(index)); }
  [[nodiscard]] const std::vector<device_link>& links() const noexcept { return links_; }
  [[nodiscard]] const cpu_info& cpu() const noexcept { return cpu_; }
  [[nodiscard]] bool root_buses_complete() const noexcept { return root_buses_complete_; }
  [[nodiscard]] const std::string& source() const noexcept { return source_; }
  // Every NUMA node of the machine (OS indexes, ascending), whether or not a
  // PCI device sits near it; empty when the topology does not say.
  [[nodiscard]] const std::vector<unsigned>& numa_nodes() const noexcept { return numa_nodes_; }

  // Index of the bridge or function at `address`; nullopt if absent.
  [[nodiscard]] std::optional<int> find(const pci_address& address) const;

  // The kernel's "chain" of a node: itself, then each upstream bridge up to
  // and including the Root Port. Host bridges are never part of it.
  [[nodiscard]] std::vector<int> chain(int node) const;
  // The host bridge a node sits below (itself for a host bridge).
  [[nodiscard]] int host_bridge_of(int node) const;

  // Functions whose kind is DMA-capable (gpu, nic, nvme, accelerator), ordered
  // GPUs first, then NICs, then the rest, each group by PCI address.
  [[nodiscard]] std::vector<int> dma_devices() const;
  // Every function, ordered by PCI address.
  [[nodiscard]] std::vector<int> functions() const;

 private:
  std::vector<pci_node> nodes_;
  std::vector<device_link> links_;
  cpu_info cpu_;
  bool root_buses_complete_ = false;
  std::string source_;
  std::vector<unsigned> numa_nodes_;
};

// The kind a function of this class/vendor with these OS devices is.
// Context: pure.
device_kind classify(std::uint16_t class_id, std::uint16_t vendor_id,
                     const std::vector<std::string>& os_devices);

// "gpu", "nic", "nvme", "accelerator", "nvswitch", "other".
const char* to_string(device_kind kind) noexcept;
// "unknown", "absent", "no_redirect", "redirect".
const char* to_string(acs_state state) noexcept;

}  // namespace xbuf::p2p
