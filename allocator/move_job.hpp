// SPDX-License-Identifier: MIT
//
// move_job.hpp - one pipelined buffer move: wait, copy, retry, signal.
//
// Overview
//   Moving a buffer must not block the evictor on the buffer's fences, and a
//   move must never lose the buffer's bytes because one copy failed. A move
//   job therefore
//     1. waits (by callbacks, not by blocking) for every fence the buffer had
//        when the move was decided - readers, writers, earlier moves;
//     2. asks the backend to copy old -> new;
//     3. if the copy fence signals with an error (a transient DMA fault, a
//        device reset), issues the copy again, up to `retries` times - the old
//        memory is still intact: its delayed free waits for the move fence;
//     4. signals the *move fence* (the buffer's KERNEL fence) with 0, or with
//        the last error when every try failed, and then the buffer's contents
//        are reported lost (on_lost) instead of silently handing out garbage.
//   Errors of the awaited fences do not stop the move: a failed reader did
//   not change the bytes, and a failed writer's bytes are what the buffer holds.
//
//   The destination may have held another buffer (a pooled host block, a
//   VRAM or chunk range used before: needs_clear), and the copy writes only
//   the buffer's bytes. So before the move fence signals, the job zeroes
//   what an export of the destination could show besides them: where the
//   backend detaches ranges of that kind, the rest of the first and last
//   granule (device_granularity for VRAM, a page for host memory: what
//   export_fd rounds to); where it cannot, the block is the buffer's own
//   (block_heap) and everything in it outside the span. Device memory of a
//   backend that exports none is left alone (no fd can show it). When every
//   copy failed, the whole destination is zeroed as well: a lost buffer
//   shows zeros, never a previous owner's bytes. Zeroing is a backend fill
//   (the copy engine), or a CPU memset where the fill is refused and the
//   CPU reaches the block; if neither can be done the move fails (lost).
//
// Rules
//   - Everything after start() runs in fence callbacks: it takes no xbuf lock
//     and only calls backend::copy and backend::fill (which never block on
//     fences), and memset where a fill is refused.
//   - The backend may run a small copy on the calling thread (the sim and
//     host engines do up to 1 MiB when idle): start() may return with the
//     bytes moved and the move fence signaled.
//   - The job keeps both memory blocks alive until it finishes.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "backends/backend.hpp"
#include "core/fence.hpp"

namespace xbuf {


class move_job : public std::enable_shared_from_this<move_job> {
 public:
  // Starts moving `src` to `dst` once `after` have signaled. Returns the move
  // fence at once. Context: may allocate; never blocks on a fence (a small
  // copy may run on this thread, see Rules).
  static fence_ptr start(backend& be, memory_span dst, memory_span src,
                         std::vector<fence_ptr> after, int retries,
                         std::function<void(int error)> on_done = {});

 private:
  move_job(backend& be, memory_span dst, memory_span src, int retries,
           std::function<void(int)> on_done);
  void issue();
  void copied(int error);
  void finish(int error);
  // Zeroes the padding (and all of dst when error != 0), then finish(error).
  void scrub(int error);
  // Byte ranges of dst's block to zero after a copy (see Overview).
  std::vector<memory_span> padding() const;

  backend& backend_;
  const memory_span dst_;
  const memory_span src_;
  int retries_left_;
  std::function<void(int)> on_done_;
  const fence_ptr done_;
};

}  // namespace xbuf
