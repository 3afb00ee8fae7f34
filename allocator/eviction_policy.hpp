// SPDX-License-Identifier: MIT
//
// eviction_policy.hpp - which buffer of a full domain to evict first.
//
// Overview
//   Plain LRU fails ML jobs in one common way: a job that cycles through more
//   than VRAM holds (offloaded layers, a long KV scan) evicts, on every pass,
//   everyone's hot buffers - and its own next ones, since in a loop the least
//   recently used buffer is the one needed next. Belady's MIN (evict the
//   buffer used again farthest in the future) is the offline optimum; this
//   policy estimates each buffer's next use from its own history and evicts
//   the farthest estimate first (a reuse-distance predictor, in the family of
//   LRU-K and CLOCK-Pro's reuse-distance test):
//
//     - Each use (allocation, validate, map, CPU access, promotion) records a
//       tick of one use clock. A buffer keeps its last `depth` use ticks.
//     - A buffer whose recent intervals repeat with a period of k = 1..3
//       intervals (a weight used in forward, backward and the optimizer is
//       k = 3; a KV block read every decode step is k = 1) is *periodic*: its
//       next use is predicted at  last + d[k-1]  (d[0] the newest interval),
//       and its score is that predicted tick. Intervals match within about a
//       quarter, so other jobs' uses interleaving irregularly do not hide a
//       job's rhythm.
//     - Any other buffer (new, irregular, or late past its prediction by more
//       than half its interval) gets LRU's estimate: used again as long from
//       now as it was last used ago, score = now + (now - last).
//     - Victims go in decreasing score; equal scores in LRU order.
//   So a cycling job's buffers, predicted a whole pass away, go before
//   another job's buffers predicted a few ticks away (scan resistance), and
//   within the loop the one just used goes first (MIN's choice for a loop).
//   With no periodic buffer (fewer than three uses each, as in most tests,
//   or intervals that do not repeat) the order is exactly LRU.
//   bench/policy_bench measures it against Belady's MIN on ML-shaped traces.
//
//   Hints (memory_manager::advise): a framework that knows better says so.
//     done : not used again for a while (an optimizer's state after its
//            update, a finished request's KV): evicted before anything
//            unhinted. Cleared by the buffer's next use.
//     keep : evicted only after every unhinted buffer (a soft pin: it still
//            moves when nothing else can) - when the eviction makes room
//            for a buffer of the same owner. Against another owner's
//            allocation keep counts for nothing: a tenant orders its own
//            buffers, it cannot push another tenant's out before its own
//            (xbufd's tenants do not trust each other; DESIGN.md, Tenancy).
//            done only ever hurts its own buffer, so it always counts.
//     none : back to the history's estimate.
//
// Rules
//   - The manager's mutex guards every reuse_history ([mgr] in buffer.hpp);
//     nothing here locks, allocates only in victim_queue / victim_order,
//     never blocks.
//   - Ticks come from one process-wide counter (next_use_tick): only
//     differences between a buffer's own uses and "now" matter. Several
//     managers in one process (tests) tick the same clock and may blur each
//     other's rhythms; xbufd has one manager.
//
// Complexity
//   record_use, predict, score : O(depth), constant.
//   victim_queue               : O(n) to build for the n buffers of a domain
//                                (the LRU walk it replaces copied the list,
//                                O(n)), O(log n) per candidate taken. The
//                                constant is larger: scoring reads each
//                                buffer; at 100k live 4 KiB buffers an
//                                evicting allocation took 3-7 ms against
//                                1-4 ms before (a shared, noisy machine).
//                                An incremental order (sets keyed by
//                                predicted use and by last use) would make
//                                it O(log n); not done yet.
#pragma once

#include <array>
#include <cstdint>
#include <list>
#include <optional>
#include <vector>

namespace xbuf {

struct buffer;  // allocator/buffer.hpp
using owner_id = std::uint32_t;  // as allocator/buffer.hpp says

enum class eviction_hint : std::uint8_t { none, done, keep };

// The last uses of one buffer, newest first.
struct reuse_history {
  static constexpr std::size_t depth = 7;
  std::array<std::uint64_t, depth> ticks{};  // ticks[0] newest
  std::uint8_t count = 0;                    // valid entries, <= depth
  eviction_hint hint = eviction_hint::none;
};

// A fresh tick of the use clock (strictly increasing, process-wide).
std::uint64_t next_use_tick() noexcept;
// The tick the next next_use_tick() will exceed: "now" for scores.
std::uint64_t current_use_tick() noexcept;

// Records a use at `tick` and clears a `done` hint (the framework was wrong,
// or the step it meant is over). Never fails.
void record_use(reuse_history& h, std::uint64_t tick) noexcept;

// The interval to the next use when the history is periodic (see Overview),
// else nullopt.
std::optional<std::uint64_t> predicted_interval(const reuse_history& h) noexcept;

// The eviction score at tick `now`: larger is evicted first. A keep hint
// counts only when `honour_keep` (see Overview).
std::uint64_t eviction_score(const reuse_history& h, std::uint64_t now, bool honour_keep = true) noexcept;

// The domain's buffers (its LRU list, least recently used first) in the
// order eviction should try them, one at a time: scores are taken once, at
// construction, and ordered lazily (a binary heap), so an eviction that
// needs the first few candidates pays O(n + few * log n), not a sort.
// The list must not change while the queue is used (the manager mutex is
// held throughout; buffers evicted meanwhile are still returned - callers
// check where a buffer is before moving it).
// Context: allocates; manager mutex held (reads [mgr] fields).
class victim_queue {
 public:
  // Keep hints count for buffers of owner `keep_for` (the owner the room is
  // for), or for every buffer without one.
  victim_queue(const std::list<buffer*>& lru, std::uint64_t now, std::optional<owner_id> keep_for = std::nullopt);
  // The next candidate, nullptr when none is left.
  buffer* next();

 private:
  struct scored {
    std::uint64_t score;
    std::size_t lru_index;  // ties: least recently used first
    buffer* buf;
  };
  std::vector<scored> heap_;
};

// All of victim_queue's order at once (tests, offline replays).
std::vector<buffer*> victim_order(const std::list<buffer*>& lru, std::uint64_t now,
                                  std::optional<owner_id> keep_for = std::nullopt);

}  // namespace xbuf
