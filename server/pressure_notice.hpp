// SPDX-License-Identifier: MIT
//
// pressure_notice.hpp - telling every client that a domain is short of
// memory (the memory_pressure event), without letting any client flood
// the others with it.
//
// Overview
//   An allocation that finds no room even after eviction is blocked by
//   memory nothing can move: pins, no_evict buffers, the chunks client
//   libraries cache (client/chunk_pool). report() sends memory_pressure to
//   every connected client so that they give idle chunks back; the
//   allocation's own wait (handlers' alloc rerun) then finds the room.
//
// Rules
//   - At most one event per domain per interval, daemon-wide, however many
//     allocations fail: a client that loops on impossible allocations
//     costs every other client at most (event size / interval) of queue,
//     never enough to trip --max-queued-bytes on a reading client.
//   - The event names a domain and a size only - not who asked.
//   - Thread-safe; mutex_ is a leaf (the sinks only post to strands).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>

#include "allocator/domain.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"
#include "server/client_registry.hpp"

namespace xbuf::server {

inline constexpr std::chrono::milliseconds default_pressure_interval{250};

class pressure_notice {
 public:
  pressure_notice(client_registry& clients, std::chrono::steady_clock::duration interval)
      : clients_(clients), interval_(interval) {}

  // Sends memory_pressure{where, bytes} to every client unless one went
  // for `where` less than an interval ago. Returns whether it was sent.
  bool report(const placement& where, std::uint64_t bytes) XBUF_EXCLUDES(mutex_);

  std::uint64_t sent() const XBUF_EXCLUDES(mutex_);
  std::uint64_t suppressed() const XBUF_EXCLUDES(mutex_);

 private:
  client_registry& clients_;
  const std::chrono::steady_clock::duration interval_;
  mutable xbuf::mutex mutex_;
  std::map<std::string, std::chrono::steady_clock::time_point> last_ XBUF_GUARDED_BY(mutex_);
  std::uint64_t sent_ XBUF_GUARDED_BY(mutex_) = 0;
  std::uint64_t suppressed_ XBUF_GUARDED_BY(mutex_) = 0;
};

}  // namespace xbuf::server
