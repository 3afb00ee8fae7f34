// SPDX-License-Identifier: MIT
//
// bench/trace/simulate.hpp - offline replays of a trace on one VRAM domain of
// a given capacity: Belady's MIN (the limit policy_bench measures against)
// and plain LRU (what xbuf did before issue 11's policy work).
//
// Cost model - the memory manager's, so the numbers compare:
//   - VRAM holds buffers at block_bytes(size) (the buddy heap's blocks);
//     everything else lives in host memory, which is never short.
//   - alloc places the buffer in VRAM (evicting others if needed) and costs
//     nothing itself: the manager allocates straight into the preferred
//     domain.
//   - use needs the buffer in VRAM (validate() promotes it): a buffer in
//     host memory is promoted, costing its size.
//   - an eviction moves the victim to host memory, costing its size - also
//     for a buffer that is never used again but not yet freed: the manager
//     cannot drop contents, so neither does the limit.
//   - free costs nothing, wherever the buffer is.
//   bytes moved = evicted bytes + promoted bytes, as manager_counters'
//   bytes_moved counts evictions and promotions (each move adds the size).
//
// MIN and variable sizes
//   With equal sizes Belady's rule (evict the block whose next use is
//   farthest) is optimal. With variable sizes and a cost per byte moved the
//   offline optimum is NP-hard (it contains knapsack), so "MIN" here is the
//   standard size-aware Belady heuristic: when room is needed, evict the
//   resident buffer whose next use is farthest in the future (never used
//   again: first), repeatedly, until the request fits. It is a close
//   stand-in for the optimum on these traces, not a proven lower bound;
//   a policy can, rarely, beat it by a little.
//   It is also demand-only, as the manager is: it never moves a buffer
//   ahead of its use and never lets a use run from host memory.
#pragma once

#include <cstdint>
#include <string>

#include "bench/trace/trace.hpp"

namespace xbuf::trace {

struct sim_result {
  std::uint64_t evicted_bytes = 0, promoted_bytes = 0;
  std::uint64_t evictions = 0, promotions = 0;
  std::string error;  // non-empty: a buffer larger than the capacity
  std::uint64_t moved() const { return evicted_bytes + promoted_bytes; }
};

enum class sim_policy : std::uint8_t {
  min,  // size-aware Belady: evict the farthest next use
  lru,  // evict the least recently used
};

// Replays a checked trace (check()) on a VRAM of `capacity` bytes.
// Complexity: O(events * log(resident buffers)).
sim_result simulate(const trace& t, std::uint64_t capacity, sim_policy p);

}  // namespace xbuf::trace
