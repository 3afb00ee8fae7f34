// SPDX-License-Identifier: MIT
//
// eviction_policy.cpp - the reuse-distance predictor of eviction_policy.hpp.
//
// Implementation notes
//   - Periods are tested on up to two pairs of intervals (d[j], d[j+k],
//     j = 0, 1): two matches say more than one, and a period-3 pattern needs
//     five uses to show itself once. Intervals "match" within a quarter of
//     the larger plus a tick or two, so that other jobs' uses interleaving
//     irregularly do not hide a job's own rhythm.
//   - The k with the smallest relative mismatch wins; ties go to the smaller
//     k (a period-1 buffer also repeats with period 2 and 3).
#include "allocator/eviction_policy.hpp"

#include <algorithm>
#include <atomic>
#include <limits>
#include <numeric>

#include "allocator/buffer.hpp"

namespace xbuf {

namespace {

std::atomic<std::uint64_t> use_clock{0};

bool close_enough(std::uint64_t a, std::uint64_t b) noexcept {
  const std::uint64_t hi = std::max(a, b), lo = std::min(a, b);
  return (hi - lo) * 4 <= hi + 8;
}

double mismatch(std::uint64_t a, std::uint64_t b) noexcept {
  const std::uint64_t hi = std::max(a, b), lo = std::min(a, b);
  return hi == 0 ? 0.0 : static_cast<double>(hi - lo) / static_cast<double>(hi);
}

}  // namespace

std::uint64_t next_use_tick() noexcept { return use_clock.fetch_add(1, std::memory_order_relaxed) + 1; }
std::uint64_t current_use_tick() noexcept { return use_clock.load(std::memory_order_relaxed) + 1; }

void record_use(reuse_history& h, std::uint64_t tick) noexcept {
  for (std::size_t i = reuse_history::depth - 1; i > 0; --i) h.ticks[i] = h.ticks[i - 1];
  h.ticks[0] = tick;
  if (h.count < reuse_history::depth) ++h.count;
  if (h.hint == eviction_hint::done) h.hint = eviction_hint::none;
}

std::optional<std::uint64_t> predicted_interval(const reuse_history& h) noexcept {
  if (h.count < 3) return std::nullopt;
  const std::size_t n = h.count - 1u;  // intervals
  std::array<std::uint64_t, reuse_history::depth - 1> d{};
  for (std::size_t i = 0; i < n; ++i) d[i] = h.ticks[i] - h.ticks[i + 1];
  std::optional<std::uint64_t> best;
  double best_error = std::numeric_limits<double>::infinity();
  for (std::size_t k = 1; k <= 3 && k < n; ++k) {
    double error = 0;
    bool ok = true;
    for (std::size_t j = 0; j < 2 && j + k < n; ++j) {
      ok = ok && close_enough(d[j], d[j + k]);
      error += mismatch(d[j], d[j + k]);
    }
    if (ok && error < best_error) {
      best_error = error;
      best = d[k - 1];
    }
  }
  return best;
}

std::uint64_t eviction_score(const reuse_history& h, std::uint64_t now, bool honour_keep) noexcept {
  switch (h.hint) {
    case eviction_hint::done: return std::numeric_limits<std::uint64_t>::max();
    case eviction_hint::keep:
      if (honour_keep) return 0;
      break;
    case eviction_hint::none: break;
  }
  const std::uint64_t last = h.count != 0 ? h.ticks[0] : 0;
  const std::uint64_t lru_estimate = now + (now > last ? now - last : 0);
  if (auto q = predicted_interval(h)) {
    const std::uint64_t predicted = last + *q;
    if (now <= predicted + *q / 2) return std::max<std::uint64_t>(predicted, 1);
  }
  return lru_estimate;
}

namespace {
// Heap order: the largest score on top, then the smallest LRU index.
bool below(const auto& a, const auto& b) {
  return a.score != b.score ? a.score < b.score : a.lru_index > b.lru_index;
}
}  // namespace

victim_queue::victim_queue(const std::list<buffer*>& lru, std::uint64_t now, std::optional<owner_id> keep_for) {
  heap_.reserve(lru.size());
  std::size_t i = 0;
  for (buffer* b : lru) {
    const bool honour_keep = !keep_for || b->owner == *keep_for;
    heap_.push_back({eviction_score(b->reuse, now, honour_keep), i++, b});
  }
  std::make_heap(heap_.begin(), heap_.end(), [](const scored& a, const scored& b) { return below(a, b); });
}

buffer* victim_queue::next() {
  if (heap_.empty()) return nullptr;
  std::pop_heap(heap_.begin(), heap_.end(), [](const scored& a, const scored& b) { return below(a, b); });
  buffer* b = heap_.back().buf;
  heap_.pop_back();
  return b;
}

std::vector<buffer*> victim_order(const std::list<buffer*>& lru, std::uint64_t now,
                                  std::optional<owner_id> keep_for) {
  victim_queue q(lru, now, keep_for);
  std::vector<buffer*> out;
  out.reserve(lru.size());
  while (buffer* b = q.next()) out.push_back(b);
  return out;
}

}  // namespace xbuf
