// SPDX-License-Identifier: MIT
//
// placement.cpp - which domains exist and who reaches them, finding room, and
// allocate().
//
// Implementation notes
//   - Waiting for memory: make_room_locked() starts evictions (moves are
//     pipelined, they never block), then drops mutex_ and waits for the
//     fences that hold the freed memory, then tries again. Another thread may
//     take the memory meanwhile; the loop is bounded and then reports
//     out_of_memory with the holders.
//   - allocate() charges the owner's quota and the pinned limit before it
//     looks for room (which may drop mutex_), and refunds on failure: a check
//     and its charge are one step (allocator/accounting.hpp).
#include "allocator/memory_manager.hpp"

#include <algorithm>
#include <bit>

#include "allocator/detail/manager_names.hpp"
#include "core/fence_join.hpp"
#include "core/units.hpp"

namespace xbuf {

using detail::placements_text;

namespace {

constexpr std::uint64_t max_alignment = 1ull << 30;
// After this many rounds in which the room that evictions gave back went to
// other threads, make_room_locked takes room in any allowed domain that has
// it before it evicts again (see there).
constexpr int contended_rounds = 3;

}  // namespace

// ------------------------------------------------------------ reachability

int memory_manager::domain_of(const placement& p) const noexcept {
  for (std::size_t i = 0; i < heaps_.size(); ++i) {
    const auto& w = heaps_[i]->where();
    if (w.kind != p.kind) continue;
    if (p.kind == memory_kind::device && w.device != p.device) continue;
    if (p.kind == memory_kind::host_pageable && w.node != p.node) continue;
    return static_cast<int>(i);
  }
  return -1;
}

bool memory_manager::domains_of(const placement& p, int near, std::vector<int>& out) const {
  auto add = [&](int d) {
    if (std::find(out.begin(), out.end(), d) == out.end()) out.push_back(d);
  };
  if (p.kind != memory_kind::host_pageable || p.node >= 0 || pageable_domains_.size() == 1) {
    const int d = domain_of(p);  // one pageable heap: its node is -1 too
    if (d < 0) return false;
    add(d);
    return true;
  }
  // Near node first, then most free bytes; equal room keeps node order.
  // (Keys computed here: the analysis does not see mutex_ held in a lambda.)
  struct key {
    bool is_near;
    std::uint64_t free;
    int domain;
  };
  std::vector<key> keys;
  for (int d : pageable_domains_) keys.push_back({at(d).where().node == near, at(d).free_bytes(), d});
  std::stable_sort(keys.begin(), keys.end(), [](const key& a, const key& b) {
    if (a.is_near != b.is_near) return a.is_near;
    return a.free > b.free;
  });
  for (const auto& k : keys) add(k.domain);
  return true;
}

int memory_manager::near_node(std::span<const placement> ps, int from) const {
  const auto devices = backend_.devices();
  auto node_of = [&](int device) {
    return device >= 0 && static_cast<std::size_t>(device) < devices.size()
               ? devices[static_cast<std::size_t>(device)].numa_node
               : -1;
  };
  if (from >= 0 && at(from).where().kind == memory_kind::device) {
    if (const int n = node_of(at(from).where().device); n >= 0) return n;
  }
  for (const auto& p : ps) {
    if (p.kind != memory_kind::device) continue;
    if (const int n = node_of(p.device); n >= 0) return n;
  }
  return -1;
}

std::vector<int> memory_manager::domains_for(std::span<const placement> ps, int from,
                                             const placement** unknown) const {
  const int near = near_node(ps, from);
  std::vector<int> out;
  if (unknown != nullptr) *unknown = nullptr;
  for (const auto& p : ps) {
    if (!domains_of(p, near, out) && unknown != nullptr && *unknown == nullptr) *unknown = &p;
  }
  return out;
}

bool memory_manager::cpu_reachable(int domain) const noexcept {
  return at(domain).where().kind != memory_kind::device || backend_.caps().host_mapped_device;
}

bool memory_manager::reachable(const attachment& att, int domain, std::string* reason,
                               bool* peer) const {
  const auto& w = at(domain).where();
  *peer = false;
  if (att.device < 0) {
    *reason = cpu_reachable(domain) ? "CPU access" : "the CPU cannot map " + to_string(w);
    return cpu_reachable(domain);
  }
  switch (w.kind) {
    case memory_kind::host_pinned:
      *reason = "pinned host memory: every device can reach it";
      return true;
    case memory_kind::host_pageable:
      *reason = "pageable host memory is not reachable by device DMA";
      return false;
    case memory_kind::device:
      if (w.device == att.device) {
        *reason = "local VRAM";
        return true;
      }
      if (!att.peer_capable) {
        *reason = "importer does not take peer addresses";
        return false;
      }
      auto verdict = config_.peer_policy(att.device, w.device);
      *reason = verdict.reason;
      *peer = verdict.allowed;
      return verdict.allowed;
  }
  return false;
}

std::vector<int> memory_manager::reachable_targets(const buffer& buf, const attachment* att) const {
  buf.resv.assert_held();
  std::vector<int> targets;
  for (const int d : domains_for(buf.placements)) {
    if (d == buf.domain) continue;
    std::string reason;
    bool peer = false;
    if (att != nullptr ? reachable(*att, d, &reason, &peer) : cpu_reachable(d)) targets.push_back(d);
  }
  return targets;
}

// ------------------------------------------------------------ finding room

bool memory_manager::falls_through_locked(const std::vector<int>& domains, std::size_t i) const {
  if (at(domains[i]).where().kind != memory_kind::host_pageable) return false;
  for (std::size_t j = i + 1; j < domains.size(); ++j) {
    if (at(domains[j]).where().kind == memory_kind::host_pageable) return true;
  }
  return false;
}

void memory_manager::reap_locked() {
  for (auto& h : heaps_) h->reap();
}

void memory_manager::touch_locked(buffer& buf) {
  buf.resv.assert_held();
  record_use(buf.reuse, next_use_tick());
  auto& lru = at(buf.domain).lru();
  lru.splice(lru.end(), lru, buf.lru_pos);
}

result<memory_manager::placed> memory_manager::make_room_locked(
    const std::vector<int>& domains, std::uint64_t size, std::uint64_t alignment,
    const buffer* self, fence_clock::time_point deadline, const cancel_token* cancel,
    std::string_view what, std::optional<owner_id> quota_owner, bool caller_retries) {
  // Until the deadline, not for a number of rounds: a round that waited for
  // evictions can find the room they gave back taken by another thread, as
  // often as the copy engine is slow and the domain contended. Giving up
  // after N such rounds failed allocations with out_of_memory while a later
  // placement had room (issue 11, "Contention").
  bool out_of_time = false;
  for (int round = 0;; ++round) {
    reap_locked();
    std::vector<int> allowed;
    std::string over;
    for (int d : domains) {
      // A domain that can never hold the buffer is passed over, not an
      // error: the next placement may (a 2 MiB chunk with a 1 MiB GPU).
      // (allocate() checked that some allowed domain is large enough.)
      if (at(d).capacity() < size) continue;
      if (!quota_owner || accounts_.domain_allows(*quota_owner, d, size)) {
        allowed.push_back(d);
      } else {
        over += (over.empty() ? "" : "; ") + accounts_.domain_quota_text(*quota_owner, d, at(d).name());
      }
    }
    if (allowed.empty()) {
      return fail(errc::quota_exceeded, std::string(what) + ": domain quota " +
                                            format_bytes(accounts_.domain_quota()) + " would be passed (" +
                                            over + ")");
    }
    // Contended (the room made for us went elsewhere, round after round), or
    // out of time: any allowed domain with room now beats waiting for the
    // preferred one again. validate() promotes the buffer later.
    if (round >= contended_rounds || (out_of_time && !caller_retries)) {
      for (int d : allowed) {
        auto a = at(d).allocate(size, alignment);
        if (a) return placed{d, std::move(*a)};
        if (a.code() != errc::out_of_memory) return std::move(a).err().prefixed(what);
      }
    }
    if (out_of_time) {
      return fail(errc::timed_out, std::string(what) + ": timed out waiting for evictions to finish");
    }
    // Placements in order of preference. A full domain is emptied by
    // eviction before the next placement is considered; only a domain with
    // nothing to evict and nothing on its way back is passed over.
    std::vector<fence_ptr> wait_for;
    bool retry_now = false;
    for (std::size_t i = 0; i < allowed.size(); ++i) {
      const int d = allowed[i];
      auto& h = at(d);
      auto a = h.allocate(size, alignment);
      if (a) return placed{d, std::move(*a)};
      if (a.code() != errc::out_of_memory) return std::move(a).err().prefixed(what);
      // Another NUMA node's pageable memory beats moving pageable buffers
      // between nodes (the kernel's default policy falls back the same way).
      if (falls_through_locked(allowed, i)) continue;
      const std::uint64_t free_now = h.free_bytes();
      const std::uint64_t coming = h.delayed_bytes();
      // Short of bytes: evict the shortfall. Enough bytes but no block big
      // enough (fragmented VRAM) and nothing on its way: evict `size` more.
      const std::uint64_t needed =
          size > free_now + coming ? size - free_now - coming : (coming == 0 ? size : 0);
      const std::uint64_t started = needed != 0 ? evict_locked(d, needed, self) : 0;
      wait_for = h.pending_fences();
      if (!wait_for.empty()) break;  // memory is coming back here: wait for it
      // Moves can finish before we look (fast copies): their memory only
      // needs reaping, so try again at once.
      if (started != 0 || h.delayed_bytes() != 0) {
        retry_now = true;
        break;
      }
    }
    if (retry_now) continue;
    if (wait_for.empty()) break;  // nothing to wait for anywhere: out of memory
    // Out of time (a zero timeout, or the wait below ran out): one more
    // round takes room wherever it is now, or fails with timed_out.
    if (fence_clock::now() >= deadline) {
      out_of_time = true;
      continue;
    }
    // The caller's mutex_lock stays in scope: drop and retake the mutex under it.
    mutex_.unlock();
    auto waited = wait_all(wait_for, time_left(deadline), cancel);
    mutex_.lock();
    if (!waited && waited.code() == errc::timed_out) {
      out_of_time = true;
    } else if (!waited) {
      return fail(waited.code(), std::string(what) + ": waiting for evictions to finish: " +
                                     waited.err().message);
    }
  }
  return no_room_locked(domains, size, what);
}


error memory_manager::no_room_locked(const std::vector<int>& domains, std::uint64_t size,
                                     std::string_view what) {
  ++counters_.allocation_failures;
  std::string msg = std::string(what) + ": no room for " + format_bytes(size) + " in";
  for (int d : domains) {
    auto s = at(d).stats();
    msg += " " + at(d).name() + " (" + format_bytes(s.used) + " of " + format_bytes(s.capacity) +
           " used, largest free block " + format_bytes(s.largest_free_block) + "; " +
           holders_locked(d) + ");";
  }
  msg.pop_back();
  return fail(errc::out_of_memory, msg);
}

fence_ptr memory_manager::room_fence(std::span<const placement> placements) {
  std::vector<fence_ptr> coming;
  {
    mutex_lock lock(mutex_);
    for (const int d : domains_for(placements)) {
      auto fs = at(d).pending_fences();
      coming.insert(coming.end(), fs.begin(), fs.end());
    }
  }
  return join(std::move(coming));
}

// ---------------------------------------------------------------- allocate

status memory_manager::clear_new_locked(buffer& buf) {
  buf.resv.assert_held();
  if (!buf.backing.needs_clear) return ok();
  // The whole block, padding included: none of a previous owner's bytes
  // may reach this one, whatever later exposes the block.
  const memory_span whole{buf.backing.span.block, buf.backing.span.offset,
                          static_cast<std::size_t>(buf.backing.bytes)};
  if (auto r = buf.resv.reserve_fences(1); !r) return r;
  auto cleared = backend_.fill(whole, 0);
  if (!cleared) {
    return std::move(cleared).err().prefixed("clearing " + format_bytes(buf.backing.bytes) +
                                             " of " + at(buf.domain).name() + " for a new owner");
  }
  buf.resv.add_fence(std::move(*cleared), fence_usage::kernel);
  ++counters_.clears;
  counters_.bytes_cleared += buf.backing.bytes;
  return ok();
}

result<buffer_id> memory_manager::allocate_unguarded(owner_id owner, const alloc_request& req) {
  if (req.size == 0) return fail(errc::invalid_argument, "allocate: size is 0");
  if (req.alignment != 0 && (!std::has_single_bit(req.alignment) || req.alignment > max_alignment)) {
    return fail(errc::invalid_argument, "allocate: alignment " + std::to_string(req.alignment) +
                                            " is not a power of two <= 1 GiB");
  }
  if (req.placements.empty()) return fail(errc::invalid_argument, "allocate: no placement given");
  const auto deadline = deadline_after(req.timeout);
  const std::string what = "allocate " + format_bytes(req.size) + " for owner " +
                           std::to_string(owner) + " (" + placements_text(req.placements) + ")";
  mutex_lock lock(mutex_);
  const placement* unknown = nullptr;
  const std::vector<int> domains = domains_for(req.placements, -1, &unknown);
  if (unknown != nullptr) {
    return fail(errc::invalid_argument, "allocate: placement " + to_string(*unknown) +
                                            " names no domain of this machine");
  }
  std::uint64_t largest = 0;
  for (const int d : domains) largest = std::max(largest, at(d).capacity());
  if (req.size > largest) {
    return fail(errc::invalid_argument, "allocate: " + format_bytes(req.size) +
                                            " is larger than any allowed domain (" +
                                            placements_text(req.placements) + ", largest " +
                                            format_bytes(largest) + ")");
  }
  if (auto s = accounts_.charge_new(owner, req.size, req.no_evict, what); !s) return std::move(s).err();
  const buffer_id id = buffers_.claim();
  auto buf = std::make_shared<buffer>(id, owner, req.size, req.alignment, req.placements,
                                      req.cpu_access, req.no_evict, req.name);
  // Nobody else knows this buffer yet: its lock is free and taking it under
  // mutex_ cannot wait.
  buf->resv.mutex().lock();
  auto room = make_room_locked(domains, req.size, req.alignment, buf.get(), deadline, req.cancel, what, owner,
                               req.caller_retries);
  if (!room) {
    accounts_.refund_new(owner, req.size, req.no_evict);
    buf->resv.mutex().unlock();
    buffers_.cancel(id);
    return std::move(room).err();
  }
  buf->domain = room->domain;
  buf->backing = std::move(room->allocation);
  accounts_.placed(*buf, buf->domain);  // with the heap's allocation: the quota check's other half
  if (auto s = clear_new_locked(*buf); !s) {
    accounts_.removed(*buf, buf->domain);
    at(buf->domain).release(std::move(buf->backing), {});
    accounts_.refund_new(owner, req.size, req.no_evict);
    buf->resv.mutex().unlock();
    buffers_.cancel(id);
    return std::move(s).err().prefixed(what);
  }
  auto& h = at(buf->domain);
  buf->lru_pos = h.lru().insert(h.lru().end(), buf.get());
  touch_locked(*buf);  // allocating is a use: the owner is about to write it
  buf->last_promotion = std::chrono::steady_clock::now();
  accounts_.placed_new(*buf);
  ++counters_.allocations;
  events_.record({.kind = memory_event_kind::alloc, .owner = owner, .buffer = id, .bytes = req.size,
                  .to = buf->domain});
  buffers_.fill(id, buf);
  buf->resv.mutex().unlock();
  return id;
}

}  // namespace xbuf
