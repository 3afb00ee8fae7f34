// SPDX-License-Identifier: MIT
#include "bench/trace/simulate.hpp"

#include <limits>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

namespace xbuf::trace {

namespace {

constexpr std::uint64_t never = std::numeric_limits<std::uint64_t>::max();

// Index of the next alloc/use of the same buffer after each event (never
// when the next event of that buffer is its free, or there is none).
std::vector<std::uint64_t> next_uses(const trace& t) {
  std::vector<std::uint64_t> next(t.events.size(), never);
  std::unordered_map<std::uint64_t, std::uint64_t> seen;  // buffer -> index of its next use
  for (std::size_t i = t.events.size(); i-- > 0;) {
    const auto& e = t.events[i];
    auto it = seen.find(e.buffer);
    next[i] = it == seen.end() ? never : it->second;
    if (e.kind == op::free) {
      seen[e.buffer] = never;
    } else {
      seen[e.buffer] = i;
    }
  }
  return next;
}

}  // namespace

sim_result simulate(const trace& t, std::uint64_t capacity, sim_policy p) {
  const auto next = p == sim_policy::min ? next_uses(t) : std::vector<std::uint64_t>{};
  // Residents by eviction key, largest evicted first: MIN keys on the next
  // use, LRU on "never - last use" (oldest use = largest key).
  std::set<std::pair<std::uint64_t, std::uint64_t>> order;
  std::unordered_map<std::uint64_t, std::uint64_t> key_of;  // resident buffer -> its key
  std::unordered_map<std::uint64_t, std::uint64_t> size_of;
  std::uint64_t free_bytes = capacity;
  sim_result r;
  auto key = [&](std::size_t i) { return p == sim_policy::min ? next[i] : never - i; };
  auto make_room = [&](std::uint64_t need) {
    while (free_bytes < need && !order.empty()) {
      auto victim = std::prev(order.end());
      const auto b = victim->second;
      const auto size = size_of[b];
      order.erase(victim);
      key_of.erase(b);
      free_bytes += block_bytes(size);
      r.evicted_bytes += size;
      ++r.evictions;
    }
  };
  for (std::size_t i = 0; i < t.events.size(); ++i) {
    const auto& e = t.events[i];
    const auto need = block_bytes(e.size);
    if (e.kind == op::free) {
      if (auto it = key_of.find(e.buffer); it != key_of.end()) {
        order.erase({it->second, e.buffer});
        key_of.erase(it);
        free_bytes += need;
      }
      size_of.erase(e.buffer);
      continue;
    }
    if (need > capacity) {
      r.error = "buffer " + std::to_string(e.buffer) + " (" + std::to_string(e.size) +
                " bytes) is larger than the capacity " + std::to_string(capacity);
      return r;
    }
    if (e.kind == op::alloc) size_of[e.buffer] = e.size;
    if (auto it = key_of.find(e.buffer); it != key_of.end()) {  // a hit
      order.erase({it->second, e.buffer});
      it->second = key(i);
      order.insert({it->second, e.buffer});
      continue;
    }
    make_room(need);
    if (e.kind == op::use) {
      r.promoted_bytes += e.size;
      ++r.promotions;
    }
    free_bytes -= need;
    key_of[e.buffer] = key(i);
    order.insert({key(i), e.buffer});
  }
  return r;
}

}  // namespace xbuf::trace
