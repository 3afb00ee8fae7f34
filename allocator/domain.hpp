// SPDX-License-Identifier: MIT
//
// domain.hpp - where a buffer can live, and how a request names it.
//
// Overview
//   A *domain* is one pool of memory with its own capacity and LRU: one per
//   GPU's VRAM, one for pinned system memory, and pageable system memory:
//   one domain, or one per NUMA node where the machine has several.
//   A *placement* is a request's way to name a domain ("VRAM of device 1",
//   "pinned host"); an allocation lists placements in order of preference.
//
//   Pageable memory on a machine of several NUMA nodes: placement::
//   pageable() (node -1) means "pageable memory near the device that uses
//   the buffer" - the node of the request's first VRAM placement, or of the
//   GPU a buffer is evicted from - then the other nodes, as the kernel's
//   default policy falls back; with no device to go by, the node with the
//   most room first. placement::pageable(n) asks for node n only.
//
// Rules
//   - Values only; no locking.
#pragma once

#include <cstdint>
#include <string>

#include "backends/backend.hpp"

namespace xbuf {

struct placement {
  memory_kind kind = memory_kind::host_pageable;
  int device = -1;  // the GPU for memory_kind::device; -1 for host memory
  int node = -1;    // host_pageable: the NUMA node, -1 = near the user (above); else -1

  static placement vram(int dev) { return {memory_kind::device, dev, -1}; }
  static placement pinned() { return {memory_kind::host_pinned, -1, -1}; }
  static placement pageable(int numa_node = -1) { return {memory_kind::host_pageable, -1, numa_node}; }

  friend bool operator==(const placement&, const placement&) = default;
};

// "vram0", "pinned", "pageable", "pageable-node1": the names stats, errors
// and the wire use.
std::string to_string(const placement& p);

}  // namespace xbuf
