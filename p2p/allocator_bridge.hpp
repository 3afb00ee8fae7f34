// SPDX-License-Identifier: MIT
//
// allocator_bridge.hpp - a machine's topology, put to work by the allocator.
//
// Overview
//   Two pieces of glue between the p2p module and the rest, kept out of
//   xbuf_p2p so that the topology code depends on nothing but hwloc:
//     - sim_config_from_topology: a simulated machine whose GPUs are the GPUs
//       of a real machine's topology (their PCI addresses and NUMA nodes), so
//       the sim backend runs on real PCI trees;
//     - make_peer_policy: the memory manager's peer_policy_fn, answering
//       "may device i use device j's VRAM address?" with the p2p rules on
//       the topology plus the backend's runtime answer (cuDeviceCanAccessPeer
//       and the like), which can veto.
//
// Rules
//   - Both are pure with respect to locking: the policy reads a const
//     topology and calls backend::can_access_peer (thread-safe), so the
//     manager may call it with its mutex held.
#pragma once

#include <cstddef>
#include <memory>

#include "allocator/memory_manager.hpp"
#include "backends/backend.hpp"
#include "backends/sim/sim_backend.hpp"
#include "core/result.hpp"
#include "p2p/topology.hpp"

namespace xbuf::p2p {

// One sim device per GPU of `topo` (in PCI order), each of `vram_bytes`,
// named after the GPU's model ("sim0 (Tesla V100-SXM3-32GB-H)"), on the
// NUMA node the topology puts it near; where the topology has several NUMA
// nodes, the sim simulates them (sim_config::numa_nodes).
// Errors: no_device (the topology has no GPU; the message says how many PCI
// functions it has), invalid_argument (vram_bytes == 0).
result<sim_config> sim_config_from_topology(const topology& topo, std::size_t vram_bytes);

// The memory manager's peer policy for the devices of `be`, located in
// `topo` by their PCI addresses. A device with no PCI address in `topo` gets
// "not allowed", with the reason, unless the runtime alone says yes.
// Ownership: shares `topo`; borrows `be`, which must outlive the policy.
peer_policy_fn make_peer_policy(std::shared_ptr<const topology> topo, backend& be);

}  // namespace xbuf::p2p
