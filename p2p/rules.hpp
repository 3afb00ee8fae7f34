// SPDX-License-Identifier: MIT
//
// rules.hpp - peer-to-peer rules on a PCI tree: nvidia-smi path levels and
// the Linux p2pdma verdict.
//
// Overview
//   Pure functions over a topology (topology.hpp); no hwloc, no I/O, so every
//   rule is tested on hand-built trees. Two independent answers per pair:
//
//   * path level, as `nvidia-smi topo -m` names it (X, NV#, PIX, PXB, PHB,
//     NODE, SYS). Let L be the lowest common ancestor of the two functions.
//     L a bridge: PIX if at most one bridge lies strictly between each
//     function and L, else PXB. L a host bridge: PHB. Different host bridges:
//     NODE if both are local to the same NUMA node(s), else SYS (unknown NUMA
//     locality gives SYS, as NVML does). A known NVLink/xGMI connection, direct
//     or through NVSwitches, overrides the PCIe level (NV#).
//
//   * p2pdma verdict, as Linux drivers/pci/p2pdma.c (calc_map_type_and_dist)
//     decides it:
//       - walk up both chains (function, upstream bridges, Root Port); the
//         first common element gives distance = hops up + hops down;
//       - common element and no ACS redirect on the tested path -> bus_addr;
//       - ACS redirect, or no common element -> the host-bridge check:
//         AMD family >= 0x17 on x86 -> thru_host_bridge; otherwise the first
//         device of each root bus must be on the kernel's allow-list (same
//         host bridge: any entry; different host bridges: both, and neither
//         entry may require the same host bridge) -> thru_host_bridge, else
//         not_supported.
//       - unknown where the input lacks what the rule needs: the root-bus
//         device is missing, or the CPU vendor is unknown and the allow-list
//         does not settle it.
//     The kernel ignores sockets and NUMA entirely; so does this verdict.
//
// Rules
//   - Where ACS state is unknown (always for hwloc XML) the verdict assumes
//     no redirect and the reason says so.
//   - Every verdict carries a reason a person can check against the tree: the
//     common bridge, the allow-listed (or not) root-bus device, the ACS nodes.
//   - Context: all functions are pure, allocate only their results, and may be
//     called concurrently on one const topology. No locking.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "p2p/topology.hpp"

namespace xbuf::p2p {

// ---------------------------------------------------------------------------
// Path levels (nvidia-smi / NVML)

// Ordered nearest first, like NVML's topology levels.
enum class path_level : std::uint8_t { x, nv, pix, pxb, phb, node, sys };

struct path_info {
  path_level level = path_level::sys;
  link_kind link = link_kind::nvlink;  // meaningful when level == nv
  unsigned links = 0;                  // bonded links for NV#; 0 = count unknown

  // "X", "NV6", "XGMI", "PIX", "PXB", "PHB", "NODE", "SYS".
  [[nodiscard]] std::string label() const;
};

// The PCIe-only level (what `nvidia-smi topo -mp` prints): never nv.
// `a`, `b`: function indices of `topo` (asserted).
path_info pcie_path(const topology& topo, int a, int b);

// The level with known NVLink/xGMI links taken into account (`topo -m`).
path_info device_path(const topology& topo, int a, int b);

// ---------------------------------------------------------------------------
// Linux p2pdma

enum class p2pdma_verdict : std::uint8_t {
  bus_addr,          // common upstream bridge, no ACS redirect: direct, with bus addresses
  thru_host_bridge,  // through a host bridge that routes peer traffic
  not_supported,     // the kernel would refuse the mapping
  unknown,           // the input lacks what the rule needs (see reason)
};

// "bus_addr", "thru_host_bridge", "not_supported", "unknown".
const char* to_string(p2pdma_verdict verdict) noexcept;

enum class tristate : std::uint8_t { no, yes, unknown };

struct p2pdma_result {
  p2pdma_verdict verdict = p2pdma_verdict::unknown;
  // Hops the kernel counts: up from the provider to the common element and
  // down to the client, or both chain lengths when there is none.
  int hops = 0;
  // Nodes on the tested path with ACS redirect set (the kernel's warning list).
  std::vector<int> acs_redirect_nodes;
  // True when some node on the tested path had unknown ACS state and the
  // verdict assumed no redirect.
  bool acs_assumed = false;
  std::string reason;

  // What pci_p2pdma_distance() would return: -1 when not supported.
  [[nodiscard]] int distance() const noexcept {
    return verdict == p2pdma_verdict::not_supported ? -1 : hops;
  }
  [[nodiscard]] bool allows_peer() const noexcept {
    return verdict == p2pdma_verdict::bus_addr || verdict == p2pdma_verdict::thru_host_bridge;
  }
};

// The verdict for `provider` (the device whose memory is mapped) and
// `client` (the device doing DMA). Symmetric except for which chain's ACS
// nodes are listed first. Same index -> bus_addr, 0.
p2pdma_result p2pdma(const topology& topo, int provider, int client);

// --- building blocks, exposed for tests and for the report ----------------

// cpu_supports_p2pdma(): x86 and vendor AMD and family >= 0x17. `unknown`
// where the architecture is x86 (or unknown) and vendor or family is missing.
tristate cpu_supports_p2pdma(const cpu_info& cpu);

struct allow_list_entry {
  std::uint16_t vendor_id;
  std::uint16_t device_id;  // ignored when any_device
  bool any_device;
  bool same_host_bridge_only;  // the kernel's REQ_SAME_HOST_BRIDGE
  const char* what;
};

// The kernel allow-list entry matching these ids; nullptr if none.
const allow_list_entry* find_allow_list_entry(std::uint16_t vendor_id, std::uint16_t device_id);

// The device of a host bridge the kernel checks against the allow-list
// (pci_host_bridge_dev): the first device on the root bus, accepted if its
// devfn is 00.0 or it is a Root Port. Where the input may have dropped
// root-bus functions (topology::root_buses_complete() false, e.g. any default
// lstopo export) and 00.0 is absent, the answer is "cannot tell" (nullopt,
// not rejected).
struct root_bus_device {
  std::optional<int> node;  // nullopt: cannot be told from the input, or rejected
  bool rejected = false;    // the first device is neither 00.0 nor a Root Port
  std::string note;         // how it was chosen, or why none
};
root_bus_device host_bridge_device(const topology& topo, int host_bridge);

struct host_bridge_check {
  tristate allowed = tristate::unknown;
  std::string reason;
};
// host_bridge_whitelist(provider, client) of the kernel.
host_bridge_check check_host_bridges(const topology& topo, int provider, int client);

}  // namespace xbuf::p2p
