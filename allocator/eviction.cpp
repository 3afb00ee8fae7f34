// SPDX-License-Identifier: MIT
//
// eviction.cpp - choosing victims in a full domain and starting their moves.
//
// Implementation notes
//   - Two passes over the domain's LRU: idle victims (no unsignaled job or
//     client fences) first, since their moves start at once; busy ones only if that was not
//     enough. Busy moves are pipelined: the copy waits for the victim's
//     fences (move_job.hpp), nothing here blocks.
//   - Victims are trylocked, never locked: the manager mutex is held, and a
//     contended buffer is in use anyway.
#include "allocator/memory_manager.hpp"

#include <algorithm>
#include <map>
#include <optional>

#include "core/units.hpp"

namespace xbuf {

std::uint64_t memory_manager::evict_locked(int domain, std::uint64_t needed, const buffer* self) {
  std::uint64_t started = 0;
  for (int pass = 0; pass < 2 && started < needed; ++pass) {
    const bool idle_only = pass == 0;
    std::vector<buffer*> candidates(at(domain).lru().begin(), at(domain).lru().end());
    for (buffer* victim : candidates) {
      if (started >= needed) break;
      if (victim == self || victim->no_evict) continue;
      if (!victim->resv.mutex().trylock()) continue;  // contended: someone is using it
      // Idle: no job or client is using it. A pending clear or earlier move
      // (KERNEL fences) runs on the engine the move will queue behind anyway.
      const bool movable =
          victim->pins == 0 && (!idle_only || victim->resv.test_signaled_above(fence_usage::kernel));
      if (movable) started += evict_one_locked(*victim, domain);
      victim->resv.mutex().unlock();
    }
  }
  return started;
}

std::uint64_t memory_manager::evict_one_locked(buffer& victim, int domain) {
  victim.resv.assert_held();
  // Destination: the victim's own placements first, then pageable host
  // (TTM's "system" fallback), never by evicting someone else.
  std::vector<int> targets;
  for (const auto& p : victim.placements) targets.push_back(domain_of(p));
  targets.push_back(domain_of(placement::pageable()));
  for (int t : targets) {
    if (t < 0 || t == domain) continue;
    auto a = at(t).allocate(victim.size, victim.alignment);
    if (!a) continue;
    const auto bytes = victim.backing.bytes;
    return move_locked(victim, placed{t, std::move(*a)}, memory_event_kind::evict) ? bytes : 0;
  }
  return 0;
}

std::string memory_manager::holders_locked(int domain) const {
  std::map<owner_id, std::pair<std::uint64_t, std::size_t>> by_owner;
  for (const buffer* b : at(domain).lru()) {
    auto& e = by_owner[b->owner];
    e.first += b->size;
    e.second += 1;
  }
  std::vector<std::pair<owner_id, std::pair<std::uint64_t, std::size_t>>> v(by_owner.begin(),
                                                                             by_owner.end());
  std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second.first > b.second.first; });
  if (v.empty()) return "no buffers";
  std::string s;
  for (std::size_t i = 0; i < v.size() && i < 3; ++i) {
    s += (i ? ", " : "") + std::string("owner ") + std::to_string(v[i].first) + " holds " +
         format_bytes(v[i].second.first) + " in " + std::to_string(v[i].second.second) +
         (v[i].second.second == 1 ? " buffer" : " buffers");
  }
  return s;
}

}  // namespace xbuf
