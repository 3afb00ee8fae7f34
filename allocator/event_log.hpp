// SPDX-License-Identifier: MIT
//
// event_log.hpp - what happened to memory, in order: a bounded ring of the
// manager's allocations, frees and moves, for `xbuf trace` and `xbuf top`.
//
// Overview
//   The memory manager records an event for every allocation (the domain it
//   landed in), every free (the domain it left; delayed frees count when the
//   owner's last reference goes) and every move (from, to, why: eviction,
//   promotion, migration for an importer), with the time on the steady clock
//   and how many dynamic attachments were told (move_notify). Each event has
//   a sequence number; a reader asks for the events after the last one it
//   saw and learns how many it missed when the ring wrapped.
//
// Rules
//   - Thread-safe: one leaf mutex. The manager records with its own mutex
//     held (manager -> event log), and nothing here calls out.
//   - Bounded: `capacity` events; the oldest go first. record() never
//     allocates once the ring is full and never fails.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "allocator/buffer.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

enum class memory_event_kind : std::uint8_t {
  alloc = 1,    // placed in `to`
  free = 2,     // left `from`
  evict = 3,    // moved from `from` to `to` to make room
  promote = 4,  // moved back to its preferred placement (validate)
  migrate = 5,  // moved where an importer or the CPU can reach it
};
inline constexpr memory_event_kind memory_event_kind_last = memory_event_kind::migrate;

struct memory_event {
  std::uint64_t seq = 0;      // 1, 2, ... in record order
  std::uint64_t time_ns = 0;  // steady clock, since the log was made
  memory_event_kind kind = memory_event_kind::alloc;
  owner_id owner = 0;
  buffer_id buffer = 0;
  std::uint64_t bytes = 0;    // the buffer's size
  int from = -1;              // domain index (the manager's heap order); -1: none
  int to = -1;
  std::uint32_t notified = 0;  // dynamic attachments told of this move
};

class event_log {
 public:
  explicit event_log(std::size_t capacity = 1u << 16);

  // Stamps `e` with the next sequence number and the time, and keeps it.
  void record(memory_event e) noexcept XBUF_EXCLUDES(mutex_);

  struct page {
    std::vector<memory_event> events;  // seq > since, oldest first, at most `max`
    std::uint64_t next = 0;            // ask for events after this next time
    std::uint64_t dropped = 0;         // events after `since` the ring no longer holds
  };
  // The events after `since` that `visible` lets through (a tenant's own),
  // at most `max` of them. Skipped events still advance `next`.
  page since(std::uint64_t since, std::size_t max, const std::function<bool(owner_id)>& visible) const
      XBUF_EXCLUDES(mutex_);

 private:
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  mutable xbuf::mutex mutex_;  // a leaf
  std::vector<memory_event> ring_ XBUF_GUARDED_BY(mutex_);
  std::size_t capacity_;
  std::uint64_t last_seq_ XBUF_GUARDED_BY(mutex_) = 0;
};

}  // namespace xbuf
