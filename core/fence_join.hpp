// SPDX-License-Identifier: MIT
//
// fence_join.hpp - acting once a set of fences has signaled, without blocking.
//
// Overview
//   when_all_signaled() runs a function once every fence of a set has
//   signaled; join() makes one fence that stands for a set (a
//   dma_fence_array analog), for APIs that hand out "the fence to wait for".
//
// Rules
//   - The function runs on the thread that signals the last fence (or on the
//     caller's thread if all had signaled), without any xbuf lock held; it
//     must follow the fence-callback rules (fence.hpp): no reservation locks,
//     no waiting for memory that may wait on fences.
#pragma once

#include <functional>
#include <vector>

#include "core/fence.hpp"

namespace xbuf {

// Calls fn(first_error) once every fence in `fences` has signaled;
// first_error is the first non-zero fence error seen (0 if none). Null
// entries are ignored. Context: may allocate; never blocks.
void when_all_signaled(std::vector<fence_ptr> fences, std::function<void(int first_error)> fn);

// One fence that signals when all of `fences` have, with the first error.
// Returns the fence itself for a single entry, a signaled stub for none.
fence_ptr join(std::vector<fence_ptr> fences);

}  // namespace xbuf
