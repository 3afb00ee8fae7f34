// SPDX-License-Identifier: MIT
//
// domain.hpp - where a buffer can live, and how a request names it.
//
// Overview
//   A *domain* is one pool of memory with its own capacity and LRU: one per
//   GPU's VRAM, one for pinned system memory, one for pageable system memory.
//   A *placement* is a request's way to name a domain ("VRAM of device 1",
//   "pinned host"); an allocation lists placements in order of preference.
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
  int device = -1;  // the GPU for memory_kind::device; ignored (-1) for host memory

  static placement vram(int dev) { return {memory_kind::device, dev}; }
  static placement pinned() { return {memory_kind::host_pinned, -1}; }
  static placement pageable() { return {memory_kind::host_pageable, -1}; }

  friend bool operator==(const placement&, const placement&) = default;
};

// "vram0", "pinned", "pageable": the names stats, errors and the wire use.
std::string to_string(const placement& p);

}  // namespace xbuf
