// SPDX-License-Identifier: MIT
//
// pci_details.hpp - PCI facts read with libpciaccess on the live machine.
//
// Overview
//   hwloc gives the tree; libpciaccess gives what hwloc does not: the ACS
//   (Access Control Services) control bits the kernel's p2pdma rule tests on
//   every node of a peer path. Also vendor/device ids and the full class code,
//   used to check hwloc's view.
//
// Rules
//   - ACS lives in PCIe extended configuration space (offset >= 0x100), which
//     Linux only lets root read in full; anything not readable is reported as
//     acs_state::unknown with a note saying why, never as "no redirect".
//   - A conventional PCI function (no PCI Express capability) has no extended
//     space, hence no ACS: acs_state::absent.
//   - Redirect = any of P2P Request Redirect (0x0004), P2P Completion Redirect
//     (0x0008), P2P Egress Control (0x0020) set in the ACS Control register,
//     as pci_bridge_has_acs_redir() in Linux tests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/pci_address.hpp"
#include "core/result.hpp"
#include "p2p/topology.hpp"

namespace xbuf::p2p {

struct pci_function_details {
  pci_address address;
  std::uint16_t vendor_id = 0;
  std::uint16_t device_id = 0;
  std::uint32_t class_code = 0;  // base << 16 | subclass << 8 | prog-if
  acs_state acs = acs_state::unknown;
  std::uint16_t acs_control = 0;  // valid when acs is no_redirect or redirect
  std::string acs_note;           // why unknown, or where the capability is
};

// ACS state from an ACS Control register value. Context: pure.
acs_state acs_from_control(std::uint16_t control) noexcept;

// Every PCI function of this machine, by address.
// Returns: io_error naming libpciaccess when it cannot be initialized (no
// /sys/bus/pci, e.g. in some containers).
// Context: blocks on sysfs reads; allocates. Not reentrant: libpciaccess has
// one global state, so calls must not overlap (the CLI calls it once).
result<std::vector<pci_function_details>> read_pci_details();

// Copies the ACS state of each function/bridge found in `details` into
// `topo`; nodes without an entry keep theirs. Context: allocates nothing.
void apply_pci_details(topology& topo, const std::vector<pci_function_details>& details);

}  // namespace xbuf::p2p
