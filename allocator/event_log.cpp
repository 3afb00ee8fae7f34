// SPDX-License-Identifier: MIT
#include "allocator/event_log.hpp"

#include <algorithm>

namespace xbuf {

event_log::event_log(std::size_t capacity) : capacity_(std::max<std::size_t>(capacity, 1)) {}

void event_log::record(memory_event e) noexcept {
  e.time_ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count());
  xbuf::mutex_lock lock(mutex_);
  e.seq = ++last_seq_;
  // The slot of seq s is (s - 1) % capacity: the ring fills, then overwrites the oldest.
  const std::size_t slot = static_cast<std::size_t>((e.seq - 1) % capacity_);
  if (ring_.size() < capacity_) {
    try {
      ring_.push_back(e);
    } catch (...) {
      --last_seq_;  // out of memory: the event is lost, the sequence stays gapless
    }
  } else {
    ring_[slot] = e;
  }
}

event_log::page event_log::since(std::uint64_t since, std::size_t max,
                                 const std::function<bool(owner_id)>& visible) const {
  page out;
  xbuf::mutex_lock lock(mutex_);
  const std::uint64_t oldest = last_seq_ >= ring_.size() ? last_seq_ - ring_.size() + 1 : 1;
  std::uint64_t seq = std::max(since + 1, oldest);
  if (seq > since + 1) out.dropped = seq - (since + 1);
  for (; seq <= last_seq_ && out.events.size() < max; ++seq) {
    const memory_event& e = ring_[static_cast<std::size_t>((seq - 1) % capacity_)];
    if (!visible || visible(e.owner)) out.events.push_back(e);
  }
  out.next = seq - 1;
  return out;
}

}  // namespace xbuf
