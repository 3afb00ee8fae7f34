// SPDX-License-Identifier: MIT
//
// clock.hpp - the one clock of every wait, and deadlines made from timeouts.
//
// Rules
//   - Every timeout in xbuf is a fence_clock::duration; wait_forever means no
//     deadline. deadline_after() turns a timeout into an absolute deadline
//     without overflowing, so "forever" stays forever.
#pragma once

#include <chrono>

namespace xbuf {

using fence_clock = std::chrono::steady_clock;

// "Wait forever" for every timeout parameter.
inline constexpr fence_clock::duration wait_forever = fence_clock::duration::max();

// now() + timeout, saturating at time_point::max() (no deadline).
// Context: pure; never blocks.
inline fence_clock::time_point deadline_after(fence_clock::duration timeout) noexcept {
  const auto now = fence_clock::now();
  if (timeout >= fence_clock::time_point::max() - now) return fence_clock::time_point::max();
  return now + timeout;
}

// Time left until `deadline`, zero once it passed. Context: pure.
inline fence_clock::duration time_left(fence_clock::time_point deadline) noexcept {
  if (deadline == fence_clock::time_point::max()) return wait_forever;
  const auto now = fence_clock::now();
  return deadline > now ? deadline - now : fence_clock::duration::zero();
}

}  // namespace xbuf
