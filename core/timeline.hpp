// SPDX-License-Identifier: MIT
//
// timeline.hpp - fences on one context that signal in order (sw_sync analog).
//
// Rules
//   - signal_through(N) and fence N's own signal() first signal every earlier
//     unsignaled fence of the timeline: work on one engine completes in
//     submission order.
//   - The timeline mutex is a leaf and is never held while signaling, so
//     callbacks may make new fences on the same timeline.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

// A sequence of fences on one context that signal in order (a copy engine,
// a client's job queue, sw_sync's timeline).
class timeline : public std::enable_shared_from_this<timeline> {
 public:
  static std::shared_ptr<timeline> create(std::string name);

  std::uint64_t context() const noexcept { return context_; }
  const std::string& name() const noexcept { return name_; }

  // A new unsignaled fence with the next seqno. Context: may allocate.
  fence_ptr next_fence();

  // Signals every pending fence with seqno <= `seqno`, in order, with `error`.
  void signal_through(std::uint64_t seqno, int error = 0) noexcept;

  // Highest seqno handed out so far (0 = none).
  std::uint64_t last_seqno() const noexcept;

 private:
  friend class fence;
  explicit timeline(std::string name);
  // Signals pending fences with seqno < `seqno` (called by fence::signal).
  void signal_predecessors(std::uint64_t seqno) noexcept;
  // Unsignaled fences with seqno <= max_seqno, in order.
  std::vector<fence_ptr> collect_pending(std::uint64_t max_seqno);

  const std::uint64_t context_;
  const std::string name_;
  mutable mutex mutex_;                 // leaf, never held while signaling
  std::uint64_t last_seqno_ XBUF_GUARDED_BY(mutex_) = 0;
  std::deque<std::weak_ptr<fence>> pending_ XBUF_GUARDED_BY(mutex_);  // seqno order
};

}  // namespace xbuf
