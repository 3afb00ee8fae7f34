// SPDX-License-Identifier: MIT
//
// topo_format.hpp - the `xbuf topo` report: pairwise matrices and their text
// and JSON renderings.
//
// Overview
//   build_report() evaluates the rules (rules.hpp, peer_policy.hpp) for every
//   pair of DMA-capable devices once; format_text() prints it the way
//   `nvidia-smi topo -m` / `-mp` do (plus a p2pdma verdict matrix, reasons
//   and ACS warnings) and format_json() prints the machine-readable shape:
//     {"schema":"xbuf.topo/1","source":"live" or the XML's path,
//      "devices":[{"index","kind","name","pci","numa","cpus"}...],
//      "path":[[...]], "pcie":[[...]], "p2p":[[...]], "distance":[[...]],
//      "reasons":[[...]]}
//   Devices are ordered GPUs first, then NICs, then the rest, each group by
//   PCI address; "numa" is -1 where the locality is unknown or spans nodes.
//
// Rules
//   - Pure: no I/O; the command (topo_command.hpp) writes the strings.
//   - The text and the JSON come from one report, so they cannot disagree.
//   - "schema" (topo_schema) comes first and names the JSON's shape and
//     version: within a version keys are only added; a key removed, renamed
//     or changed in meaning takes the next number, as for `xbuf stat --json`
//     (client/stats_json.hpp).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "p2p/peer_policy.hpp"
#include "p2p/rules.hpp"
#include "p2p/topology.hpp"

namespace xbuf::p2p {

struct topo_report {
  std::vector<int> devices;       // node indices, display order
  std::vector<std::string> labels;  // GPU0, NIC0, NVME0, ACC0
  // [i][j] over `devices`.
  std::vector<std::vector<path_info>> path;
  std::vector<std::vector<path_info>> pcie;
  std::vector<std::vector<p2pdma_result>> p2p;
  std::vector<std::vector<std::optional<bool>>> runtime;  // all nullopt without a query
  std::vector<std::string> warnings;
  bool any_acs_assumed = false;
};

// The "schema" value of format_json's object.
inline constexpr std::string_view topo_schema = "xbuf.topo/1";

// Context: allocates; O(n^2) rule evaluations for n DMA-capable devices.
topo_report build_report(const topology& topo, const runtime_peer_query& runtime = {});

// `verbose`: print the reason of every pair even when there are many.
std::string format_text(const topology& topo, const topo_report& report, bool verbose = false);
std::string format_json(const topology& topo, const topo_report& report);

}  // namespace xbuf::p2p
