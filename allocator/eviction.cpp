// SPDX-License-Identifier: MIT
//
// eviction.cpp - choosing victims in a full domain and starting their moves.
//
// Implementation notes
//   - Candidates come in the order of eviction_policy.hpp (a reuse-distance
//     estimate of each buffer's next use, farthest first; plain LRU order for
//     buffers with no periodic history): idle ones (no unsignaled job or
//     client fences) first, since their moves start at once, then busy ones.
//     Busy moves are pipelined: the copy waits for the victim's fences
//     (move_job.hpp), nothing here blocks.
//   - Victims are trylocked, never locked: the manager mutex is held, and a
//     contended buffer is in use anyway.
//   - In a buddy-allocated VRAM heap, bytes are not enough: the request needs
//     one free block of B = bit_ceil(size) bytes, B-aligned. Evicting in
//     order until `needed` bytes are out frees scattered pieces and then
//     evicts again (on bench/policy_bench's training trace the manager moved
//     about 10% more than LRU counting bytes). So there, as drm_mm's
//     eviction scan does, candidates join a roster in policy order, each
//     counted against the B-aligned region it lies in; the first region
//     whose live buffers are all on the roster is freed, evicting only those.
//     A candidate whose block is at least B frees a region by itself.
//     Regions of a non-power-of-two arena's smaller roots cannot hold B and
//     are left out. Delayed-free memory counts as free: it is coming back,
//     and make_room_locked waits for it.
#include "allocator/memory_manager.hpp"

#include <algorithm>
#include <bit>
#include <map>
#include <optional>
#include <unordered_map>

#include "allocator/detail/manager_names.hpp"
#include "allocator/eviction_policy.hpp"
#include "core/guarded.hpp"
#include "core/units.hpp"

namespace xbuf {

std::uint64_t memory_manager::evict_locked(int domain, std::uint64_t needed, const buffer* self) {
  auto& lru = at(domain).lru();
  // A keep hint protects a buffer from its own owner's allocations only.
  victim_queue queue(lru, current_use_tick(), self != nullptr ? std::optional(self->owner) : std::nullopt);
  // The next movable candidate and its range: idle ones in policy order,
  // then the busy ones met on the way, in the same order.
  std::vector<buffer*> busy;
  std::size_t next_busy = 0;
  auto next = [&](std::optional<range>* where) -> buffer* {
    while (buffer* victim = queue.next()) {
      if (victim == self || victim->no_evict) continue;
      if (!victim->resv.mutex().trylock()) continue;  // contended: someone is using it
      bool take = false;
      if (victim->pins == 0) {
        // Idle: no job or client is using it. A pending clear or earlier
        // move (KERNEL fences) runs on the engine the move will queue
        // behind anyway.
        take = victim->resv.test_signaled_above(fence_usage::kernel);
        if (!take) busy.push_back(victim);
        *where = victim->backing.range_used;
      }
      victim->resv.mutex().unlock();
      if (take) return victim;
    }
    while (next_busy < busy.size()) {
      buffer* victim = busy[next_busy++];
      if (!victim->resv.mutex().trylock()) continue;
      const bool take = victim->pins == 0 && victim->domain == domain;
      *where = victim->backing.range_used;
      victim->resv.mutex().unlock();
      if (take) return victim;
    }
    return nullptr;
  };
  std::uint64_t started = 0;
  std::optional<range> where;
  const bool ranged = self != nullptr && at(domain).where().kind == memory_kind::device && !lru.empty() &&
                      lru.front()->read_both_unlocked().range_used.has_value();
  if (!ranged) {
    while (started < needed) {
      buffer* victim = next(&where);
      if (victim == nullptr) break;
      if (!victim->resv.mutex().trylock()) continue;
      if (victim->domain == domain && victim->pins == 0) started += evict_one_locked(*victim, domain);
      victim->resv.mutex().unlock();
    }
    return started;
  }

  // The block scan (see the notes above).
  const std::uint64_t block =
      std::bit_ceil(std::max({self->size, self->alignment, config_.min_block}));
  const std::uint64_t usable = at(domain).capacity() & ~(block - 1);  // roots of at least `block`
  // Region -> live bytes, taken at the first candidate smaller than a
  // region (a walk over the domain): requests no larger than every block
  // there, the common case of equal sizes, never need it.
  std::unordered_map<std::uint64_t, std::uint64_t> live;
  bool live_known = false;
  struct region_roster {
    std::uint64_t bytes = 0;
    std::vector<buffer*> members;
  };
  std::unordered_map<std::uint64_t, region_roster> roster;
  std::vector<buffer*> chosen;  // empty: no region can be freed, nothing moves for nothing
  while (buffer* victim = next(&where)) {
    if (!where || where->offset + std::max(where->block_size, block) > usable) continue;
    if (where->block_size >= block) {
      chosen = {victim};
      break;
    }
    if (!live_known) {
      for (const buffer* b : lru) {
        const auto r = b->read_both_unlocked().range_used;
        if (r && r->block_size < block) live[r->offset / block] += r->block_size;
      }
      live_known = true;
    }
    auto& reg = roster[where->offset / block];
    reg.bytes += where->block_size;
    reg.members.push_back(victim);
    if (reg.bytes >= live[where->offset / block]) {
      chosen = std::move(reg.members);
      break;
    }
  }
  for (buffer* victim : chosen) {
    if (!victim->resv.mutex().trylock()) continue;
    if (victim->domain == domain && victim->pins == 0) started += evict_one_locked(*victim, domain);
    victim->resv.mutex().unlock();
  }
  return started;
}

std::uint64_t memory_manager::evict_one_locked(buffer& victim, int domain) {
  victim.resv.assert_held();
  // Destination: the victim's own placements first, then pageable host
  // (TTM's "system" fallback) on the NUMA node of the GPU it leaves, never
  // by evicting someone else. A victim in pageable memory has no fallback:
  // moving it to another node's pageable memory would undo its placement
  // for a buffer that can use that node itself (make_room_locked).
  const int near = near_node(victim.placements, domain);
  std::vector<int> targets;
  for (const auto& p : victim.placements) (void)domains_of(p, near, targets);
  if (at(domain).where().kind != memory_kind::host_pageable) {
    (void)domains_of(placement::pageable(), near, targets);
  }
  for (int t : targets) {
    if (t == domain) continue;
    auto a = at(t).allocate(victim.size, victim.alignment);
    if (!a) continue;
    const auto bytes = victim.backing.bytes;
    return move_locked(victim, placed{t, std::move(*a)}, memory_event_kind::evict) ? bytes : 0;
  }
  return 0;
}

status memory_manager::advise(owner_id owner, buffer_id id, eviction_hint hint) {
  return guarded("memory manager", "advise", [&] { return advise_unguarded(owner, id, hint); });
}

status memory_manager::advise_unguarded(owner_id owner, buffer_id id, eviction_hint hint) {
  mutex_lock lock(mutex_);
  auto buf = find_locked(owner, id);
  if (!buf) return detail::unknown_buffer(owner, id);
  // An importer's word would order another owner's buffers (done sends
  // them out first): only the owner advises.
  if (buf->owner != owner) {
    return fail(errc::permission_denied, "advise " + detail::buffer_name(id) + ": only its owner (" +
                                             std::to_string(buf->owner) + ") advises its eviction");
  }
  buf->reuse.hint = hint;  // [mgr]: the manager mutex is enough
  return ok();
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
