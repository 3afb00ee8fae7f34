// SPDX-License-Identifier: MIT
//
// peer_policy.hpp - the one question the allocator asks the p2p module: may
// this importer map that exporter's memory by peer (device) address?
//
// Overview
//   Combines three inputs into one documented answer:
//     1. the link level between the two devices (device_path: NV#/XGMI when
//        a direct or NVSwitch link is known, else the PCIe level);
//     2. the Linux p2pdma verdict for the PCIe path (rules.hpp);
//     3. optionally, the GPU runtime's own answer (cuDeviceCanAccessPeer,
//        hipDeviceCanAccessPeer), supplied by a backend as an optional<bool>.
//
//   Decision:
//     runtime says no                      -> denied, decided by the runtime (veto)
//     runtime says yes                     -> allowed; decided by the topology if
//                                             it agrees, else by the runtime (the
//                                             vendor driver performs the mapping
//                                             and knows its chipset, e.g. NVLink
//                                             on a pair hwloc did not record)
//     no runtime answer: NVLink/xGMI known -> allowed (topology)
//                        bus_addr / thru_host_bridge -> allowed (topology)
//                        not_supported / unknown     -> denied (topology):
//                        an address the importer might not reach is never
//                        handed out on a guess.
//
// Rules
//   - Pure function over a const topology: no I/O, no locks; callable from any
//     thread, concurrently. Allocates only the returned strings.
//   - The allocator calls it when an attachment of a peer-capable importer
//     maps a VRAM buffer of another device; a `false` means "migrate to pinned
//     host memory both can reach" (DESIGN.md, Peer-to-peer).
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "core/pci_address.hpp"
#include "core/result.hpp"
#include "p2p/rules.hpp"
#include "p2p/topology.hpp"

namespace xbuf::p2p {

enum class peer_decider : std::uint8_t {
  topology,  // the PCI/NVLink rules decided (runtime absent or agreeing)
  runtime,   // the GPU runtime's answer overrode the rules (veto or override)
};

const char* to_string(peer_decider d) noexcept;

struct peer_decision {
  bool allowed = false;
  path_info path;               // X, NV#, XGMI, PIX, PXB, PHB, NODE or SYS
  p2pdma_result pcie;           // the Linux p2pdma verdict of the PCIe path
  std::optional<bool> runtime;  // the runtime's answer as given; nullopt = none
  peer_decider decided_by = peer_decider::topology;
  std::string reason;           // one line a person can check
};

// A GPU backend's peer-access query: (importer, exporter) -> its answer, or
// nullopt when it does not manage one of the two devices.
using runtime_peer_query =
    std::function<std::optional<bool>(const pci_address& importer, const pci_address& exporter)>;

// May `importer` map memory of `exporter` by peer address?
// Returns: not_found when either address is not a PCI function of `topo`
//   (message names the address and the topology's source). The same address
//   twice is allowed (path X: no peer mapping is needed).
// Context: pure; may allocate; never blocks. Locking: none (topo is const).
// Ownership: borrows `topo` for the call only.
result<peer_decision> peer_access(const topology& topo, const pci_address& importer,
                                  const pci_address& exporter,
                                  std::optional<bool> runtime_can_access = std::nullopt);

}  // namespace xbuf::p2p
