// SPDX-License-Identifier: MIT
//
// memory_manager.cpp - placement, eviction, attachments, budgets.
//
// Implementation notes
//   - A public call on one buffer runs: look the buffer up under mutex_, drop
//     mutex_, take the buffer's reservation lock, retake mutex_, check the
//     buffer is still alive, work. That keeps the lock order (reservation ->
//     manager mutex) without holding mutex_ while blocking on a buffer lock.
//   - Waiting for memory: make_room_locked() starts evictions (moves are
//     pipelined, they never block), then drops mutex_ and waits for the
//     fences that hold the freed memory, then tries again. Another thread may
//     take the memory meanwhile; the loop is bounded and then reports
//     out_of_memory with the holders.
#include "allocator/memory_manager.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>

#include "allocator/move_job.hpp"
#include "core/fence_join.hpp"
#include "core/units.hpp"

namespace xbuf {

namespace {

constexpr std::uint64_t max_alignment = 1ull << 30;
constexpr int max_room_attempts = 16;

std::string buffer_name(buffer_id id) { return "buffer " + std::to_string(id); }
std::string attachment_name(attachment_id id) { return "attachment " + std::to_string(id); }

error unknown_buffer(owner_id owner, buffer_id id) {
  return fail(errc::not_found,
              buffer_name(id) + ": no such buffer for owner " + std::to_string(owner));
}
error unknown_attachment(owner_id owner, attachment_id id) {
  return fail(errc::not_found,
              attachment_name(id) + ": no such attachment for owner " + std::to_string(owner));
}
error gone(buffer_id id) { return fail(errc::not_found, buffer_name(id) + ": freed meanwhile"); }

std::string placements_text(const std::vector<placement>& ps) {
  std::string s;
  for (const auto& p : ps) s += (s.empty() ? "" : ",") + to_string(p);
  return s;
}

}  // namespace

// ------------------------------------------------------------------ creation

memory_manager::memory_manager(manager_config config)
    : config_(std::move(config)), backend_(*config_.device_backend) {}

result<std::unique_ptr<memory_manager>> memory_manager::create(manager_config config) {
  if (config.device_backend == nullptr) {
    return fail(errc::invalid_argument, "memory manager: no device backend given");
  }
  const auto devices = config.device_backend->devices();
  if (!config.vram_capacity.empty() && config.vram_capacity.size() != devices.size()) {
    return fail(errc::invalid_argument,
                "memory manager: vram_capacity has " + std::to_string(config.vram_capacity.size()) +
                    " entries for " + std::to_string(devices.size()) + " devices");
  }
  if (config.pinned_capacity == 0 || config.pageable_capacity == 0) {
    return fail(errc::invalid_argument, "memory manager: host capacities must not be 0");
  }
  if (config.move_retries < 0) {
    return fail(errc::invalid_argument, "memory manager: move_retries must be >= 0");
  }
  std::unique_ptr<memory_manager> m(new memory_manager(std::move(config)));
  auto& cfg = m->config_;
  for (std::size_t d = 0; d < devices.size(); ++d) {
    std::uint64_t cap = cfg.vram_capacity.empty() ? 0 : cfg.vram_capacity[d];
    if (cap == 0) cap = devices[d].memory_bytes;
    cap -= cap % cfg.min_block;  // the buddy needs whole chunks
    auto h = heap::create_vram(m->backend_, static_cast<int>(d), cap, cfg.min_block);
    if (!h) return h.err().prefixed("memory manager");
    m->heaps_.push_back(std::move(*h));
  }
  m->heaps_.push_back(heap::create_host(m->backend_, true, cfg.pinned_capacity));
  m->heaps_.push_back(heap::create_host(m->backend_, false, cfg.pageable_capacity));
  if (!cfg.peer_policy) {
    backend* be = cfg.device_backend;
    cfg.peer_policy = [be](int importer, int exporter) {
      auto r = be->can_access_peer(importer, exporter);
      if (!r) return peer_decision{false, r.err().message};
      if (!r->has_value()) {
        return peer_decision{false, "no topology verdict and the backend cannot tell"};
      }
      return peer_decision{**r, **r ? std::string(be->name()) + " runtime allows peer access"
                                    : std::string(be->name()) + " runtime vetoes peer access"};
    };
  }
  return m;
}

memory_manager::~memory_manager() {
  // Moves and delayed frees hold memory blocks and run copies: let them end
  // before the heaps (and the arenas they point into) go.
  std::vector<fence_ptr> pending;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, buf] : buffers_) {
      auto fs = buf->resv.fences(fence_usage::bookkeep);
      pending.insert(pending.end(), fs.begin(), fs.end());
    }
    for (auto& h : heaps_) {
      auto fs = h->pending_fences();
      pending.insert(pending.end(), fs.begin(), fs.end());
    }
  }
  (void)wait_all(pending);
  std::lock_guard lock(mutex_);
  for (auto& h : heaps_) h->reap();
}

// ------------------------------------------------------------------- lookups

std::shared_ptr<buffer> memory_manager::find_locked(owner_id owner, buffer_id id) const {
  auto it = buffers_.find(id);
  if (it == buffers_.end()) return nullptr;
  const auto& buf = it->second;
  if (buf->owner != owner && !buf->shared_with.contains(owner)) return nullptr;
  return buf;
}

std::shared_ptr<attachment> memory_manager::find_attachment_locked(
    owner_id owner, attachment_id id, std::shared_ptr<buffer>* buf) const {
  auto it = attachment_index_.find(id);
  if (it == attachment_index_.end()) return nullptr;
  auto att = it->second.lock();
  if (!att || att->owner != owner) return nullptr;
  auto b = buffers_.find(attachment_buffer_.at(id));
  if (b == buffers_.end()) return nullptr;
  *buf = b->second;
  return att;
}

result<memory_manager::locked_buffer> memory_manager::lock_buffer(owner_id owner, buffer_id id) {
  std::shared_ptr<buffer> buf;
  {
    std::lock_guard lock(mutex_);
    buf = find_locked(owner, id);
    if (!buf) return unknown_buffer(owner, id);
  }
  std::unique_lock resv(buf->resv.mutex());
  // destroyed is written under both locks, so the reservation lock suffices.
  if (buf->destroyed) return gone(id);
  return locked_buffer{std::move(buf), std::move(resv)};
}

result<memory_manager::locked_attachment> memory_manager::lock_attachment(owner_id owner,
                                                                          attachment_id id) {
  std::shared_ptr<buffer> buf;
  std::shared_ptr<attachment> att;
  {
    std::lock_guard lock(mutex_);
    att = find_attachment_locked(owner, id, &buf);
    if (!att) return unknown_attachment(owner, id);
  }
  std::unique_lock resv(buf->resv.mutex());
  // Detached while we waited for the lock? The list is guarded by it.
  if (std::find(buf->attachments.begin(), buf->attachments.end(), att) == buf->attachments.end()) {
    return unknown_attachment(owner, id);
  }
  return locked_attachment{std::move(buf), std::move(att), std::move(resv)};
}

int memory_manager::domain_of(const placement& p) const noexcept {
  for (std::size_t i = 0; i < heaps_.size(); ++i) {
    const auto& w = heaps_[i]->where();
    if (w.kind == p.kind && (p.kind != memory_kind::device || w.device == p.device)) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

bool memory_manager::cpu_reachable(int domain) const noexcept {
  const auto& w = heaps_[static_cast<std::size_t>(domain)]->where();
  return w.kind != memory_kind::device || backend_.caps().host_mapped_device;
}

bool memory_manager::reachable(const attachment& att, int domain, std::string* reason,
                               bool* peer) const {
  const auto& w = heaps_[static_cast<std::size_t>(domain)]->where();
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

// ---------------------------------------------------------- placing memory

void memory_manager::reap_locked() {
  for (auto& h : heaps_) h->reap();
}

void memory_manager::touch_locked(buffer& buf) {
  auto& lru = heaps_[static_cast<std::size_t>(buf.domain)]->lru();
  lru.splice(lru.end(), lru, buf.lru_pos);
}

std::string memory_manager::holders_locked(int domain) const {
  std::map<owner_id, std::pair<std::uint64_t, std::size_t>> by_owner;
  for (const buffer* b : heaps_[static_cast<std::size_t>(domain)]->lru()) {
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

std::uint64_t memory_manager::evict_locked(int domain, std::uint64_t needed, const buffer* self) {
  auto& h = *heaps_[static_cast<std::size_t>(domain)];
  std::uint64_t started = 0;
  // Two passes over the LRU: idle victims (no unsignaled fences) first, since
  // their moves start at once; busy ones only if that was not enough.
  for (int pass = 0; pass < 2 && started < needed; ++pass) {
    const bool idle_only = pass == 0;
    std::vector<buffer*> candidates(h.lru().begin(), h.lru().end());
    for (buffer* victim : candidates) {
      if (started >= needed) break;
      if (victim == self || victim->pins > 0 || victim->no_evict) continue;
      if (!victim->resv.mutex().trylock()) continue;  // contended: someone is using it
      const bool idle = victim->resv.test_signaled(fence_usage::bookkeep);
      if (idle_only && !idle) {
        victim->resv.mutex().unlock();
        continue;
      }
      // Destination: the victim's own placements first, then pageable host
      // (TTM's "system" fallback), never by evicting someone else.
      std::optional<placed> dest;
      std::vector<int> targets;
      for (const auto& p : victim->placements) targets.push_back(domain_of(p));
      targets.push_back(domain_of(placement::pageable()));
      for (int t : targets) {
        if (t < 0 || t == domain) continue;
        auto a = heaps_[static_cast<std::size_t>(t)]->allocate(victim->size, victim->alignment);
        if (a) {
          dest = placed{t, std::move(*a)};
          break;
        }
      }
      if (dest) {
        const auto bytes = victim->backing.bytes;
        if (move_locked(*victim, std::move(*dest), true)) started += bytes;
      }
      victim->resv.mutex().unlock();
    }
  }
  return started;
}

result<memory_manager::placed> memory_manager::make_room_locked(
    lock_t& lock, const std::vector<int>& domains, std::uint64_t size, std::uint64_t alignment,
    const buffer* self, fence_clock::time_point deadline, const cancel_token* cancel,
    std::string_view what) {
  for (int attempt = 0; attempt < max_room_attempts; ++attempt) {
    reap_locked();
    // Placements in order of preference. A full domain is emptied by
    // eviction before the next placement is considered; only a domain with
    // nothing to evict and nothing on its way back is passed over.
    std::vector<fence_ptr> wait_for;
    bool retry_now = false;
    for (int d : domains) {
      auto& h = *heaps_[static_cast<std::size_t>(d)];
      auto a = h.allocate(size, alignment);
      if (a) return placed{d, std::move(*a)};
      if (a.code() != errc::out_of_memory) return std::move(a).err().prefixed(what);
      const std::uint64_t free_now = h.capacity() - std::min(h.capacity(), h.used());
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
    lock.unlock();
    const auto now = fence_clock::now();
    auto waited = wait_all(wait_for, deadline > now ? deadline - now : fence_clock::duration::zero(), cancel);
    lock.lock();
    if (!waited) {
      return fail(waited.code(), std::string(what) + ": waiting for evictions to finish: " +
                                     waited.err().message);
    }
  }
  ++counters_.allocation_failures;
  std::string msg = std::string(what) + ": no room for " + format_bytes(size) + " in";
  for (int d : domains) {
    auto& h = *heaps_[static_cast<std::size_t>(d)];
    auto s = h.stats();
    msg += " " + h.name() + " (" + format_bytes(s.used) + " of " + format_bytes(s.capacity) +
           " used, largest free block " + format_bytes(s.largest_free_block) + "; " +
           holders_locked(d) + ");";
  }
  msg.pop_back();
  return fail(errc::out_of_memory, msg);
}

status memory_manager::move_locked(buffer& buf, placed to, bool eviction) {
  buf.resv.assert_held();
  // Reserve first: the only step that can fail comes before any change.
  if (auto r = buf.resv.reserve_fences(1); !r) {
    heaps_[static_cast<std::size_t>(to.domain)]->release(std::move(to.allocation), {});
    return r;
  }
  const placement from = heaps_[static_cast<std::size_t>(buf.domain)]->where();
  const placement dest = heaps_[static_cast<std::size_t>(to.domain)]->where();
  // Importers hear of the move before it is decided irrevocably, with the
  // reservation held; their old mapping stays valid until the fences below
  // (which include everything they submitted) have signaled.
  for (const auto& att : buf.attachments) {
    if (att->mode != attach_mode::dynamic) continue;
    att->move_notify(move_notice{buf.id, att->id, from, dest});
    ++counters_.move_notifies;
  }
  auto in_flight = buf.resv.fences(fence_usage::bookkeep);
  auto failed = failed_moves_;
  std::weak_ptr<buffer> weak;
  if (auto it = buffers_.find(buf.id); it != buffers_.end()) weak = it->second;
  fence_ptr moved = move_job::start(backend_, to.allocation.span, buf.backing.span, in_flight,
                                    config_.move_retries, [failed, weak](int error) {
                                      if (error == 0) return;
                                      failed->fetch_add(1);
                                      if (auto b = weak.lock()) b->lost = true;
                                    });
  buf.resv.add_fence(moved, fence_usage::kernel);
  // The old memory is read by the copy and may still be used by the
  // in-flight work: it is freed after all of them.
  in_flight.push_back(moved);
  auto& old_heap = *heaps_[static_cast<std::size_t>(buf.domain)];
  if (old_heap.release(std::move(buf.backing), std::move(in_flight))) ++counters_.delayed_frees;
  old_heap.lru().erase(buf.lru_pos);
  auto& new_heap = *heaps_[static_cast<std::size_t>(to.domain)];
  buf.lru_pos = new_heap.lru().insert(new_heap.lru().end(), &buf);
  buf.domain = to.domain;
  buf.backing = std::move(to.allocation);
  ++buf.generation;
  ++counters_.moves;
  counters_.bytes_moved += buf.size;
  if (eviction) ++counters_.evictions;
  return ok();
}

status memory_manager::migrate_locked(lock_t& lock, buffer& buf, const std::vector<int>& domains,
                                      const cancel_token* cancel, std::string_view why) {
  auto room = make_room_locked(lock, domains, buf.size, buf.alignment, &buf,
                               deadline_after(std::chrono::seconds(30)), cancel,
                               buffer_name(buf.id) + ": " + std::string(why));
  if (!room) return std::move(room).err();
  if (buf.destroyed) {
    heaps_[static_cast<std::size_t>(room->domain)]->release(std::move(room->allocation), {});
    return gone(buf.id);
  }
  return move_locked(buf, std::move(*room), false);
}

void memory_manager::add_pin_locked(buffer& buf) { ++buf.pins; }
void memory_manager::drop_pin_locked(buffer& buf) { --buf.pins; }

void memory_manager::destroy_locked(buffer& buf) {
  buf.resv.assert_held();
  auto& h = *heaps_[static_cast<std::size_t>(buf.domain)];
  h.lru().erase(buf.lru_pos);
  if (h.release(std::move(buf.backing), buf.resv.fences(fence_usage::bookkeep))) {
    ++counters_.delayed_frees;
  }
  if (buf.no_evict) pinned_bytes_ -= buf.size;
  buf.destroyed = true;
  ++counters_.frees;
  buffers_.erase(buf.id);
}

// ------------------------------------------------------------ the public API

result<buffer_id> memory_manager::allocate(owner_id owner, const alloc_request& req) {
  if (req.size == 0) return fail(errc::invalid_argument, "allocate: size is 0");
  if (req.alignment != 0 && (!std::has_single_bit(req.alignment) || req.alignment > max_alignment)) {
    return fail(errc::invalid_argument, "allocate: alignment " + std::to_string(req.alignment) +
                                            " is not a power of two <= 1 GiB");
  }
  if (req.placements.empty()) return fail(errc::invalid_argument, "allocate: no placement given");
  std::vector<int> domains;
  std::uint64_t largest = 0;
  for (const auto& p : req.placements) {
    const int d = domain_of(p);
    if (d < 0) {
      return fail(errc::invalid_argument, "allocate: placement " + to_string(p) +
                                              " names no domain of this machine");
    }
    largest = std::max(largest, heaps_[static_cast<std::size_t>(d)]->capacity());
    domains.push_back(d);
  }
  if (req.size > largest) {
    return fail(errc::invalid_argument, "allocate: " + format_bytes(req.size) +
                                            " is larger than any allowed domain (" +
                                            placements_text(req.placements) + ", largest " +
                                            format_bytes(largest) + ")");
  }
  const std::string what = "allocate " + format_bytes(req.size) + " for owner " +
                           std::to_string(owner) + " (" + placements_text(req.placements) + ")";

  lock_t lock(mutex_);
  if (auto q = quotas_.find(owner); q != quotas_.end() && q->second != 0) {
    const auto held = owner_bytes_[owner];
    if (held + req.size > q->second) {
      return fail(errc::quota_exceeded, what + ": owner quota " + format_bytes(q->second) +
                                            " would be passed (" + format_bytes(held) + " held)");
    }
  }
  if (req.no_evict && pinned_bytes_ + req.size > config_.pinned_limit) {
    return fail(errc::quota_exceeded, what + ": pinned limit " + format_bytes(config_.pinned_limit) +
                                          " would be passed (" + format_bytes(pinned_bytes_) +
                                          " pinned)");
  }
  const buffer_id id = next_buffer_id_++;
  auto buf = std::make_shared<buffer>(id, owner, req.size, req.alignment, req.placements,
                                      req.cpu_access, req.no_evict, req.name);
  // Nobody else knows this buffer yet: its lock is free and taking it under
  // mutex_ cannot wait.
  [[maybe_unused]] const bool locked = buf->resv.mutex().trylock();
  auto room = make_room_locked(lock, domains, req.size, req.alignment, buf.get(),
                               deadline_after(req.timeout), req.cancel, what);
  if (!room) {
    buf->resv.mutex().unlock();
    return std::move(room).err();
  }
  buf->domain = room->domain;
  buf->backing = std::move(room->allocation);
  auto& h = *heaps_[static_cast<std::size_t>(buf->domain)];
  buf->lru_pos = h.lru().insert(h.lru().end(), buf.get());
  buf->last_promotion = std::chrono::steady_clock::now();
  if (req.no_evict) {
    add_pin_locked(*buf);
    pinned_bytes_ += req.size;
  }
  owner_bytes_[owner] += req.size;
  ++counters_.allocations;
  buffers_.emplace(id, buf);
  buf->resv.mutex().unlock();
  return id;
}

status memory_manager::free(owner_id owner, buffer_id id) {
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  std::lock_guard lock(mutex_);
  if (buf->owner != owner) return unknown_buffer(owner, id);  // shared with it, not its own
  if (buf->owner_released) {
    return fail(errc::bad_state, buffer_name(id) + ": already freed (still attached by " +
                                     std::to_string(buf->attachments.size()) + " importers)");
  }
  buf->owner_released = true;
  owner_bytes_[owner] -= buf->size;
  for (auto it = cpu_accesses_.begin(); it != cpu_accesses_.end();) {
    if (it->first.second == id) {
      buf->pins -= it->second;
      it = cpu_accesses_.erase(it);
    } else {
      ++it;
    }
  }
  if (buf->attachments.empty()) destroy_locked(*buf);
  return ok();
}

status memory_manager::share(owner_id owner, buffer_id id, owner_id with) {
  std::lock_guard lock(mutex_);
  auto buf = find_locked(owner, id);
  if (!buf || buf->owner != owner) return unknown_buffer(owner, id);
  if (buf->owner_released) return fail(errc::bad_state, buffer_name(id) + ": already freed");
  buf->shared_with.insert(with);
  return ok();
}

result<attachment_id> memory_manager::attach(owner_id owner, buffer_id id, const attach_request& req,
                                             const cancel_token* cancel) {
  const auto device_count = static_cast<int>(backend_.devices().size());
  if (req.device < -1 || req.device >= device_count) {
    return fail(errc::invalid_argument, "attach " + buffer_name(id) + ": device " +
                                            std::to_string(req.device) + " does not exist (" +
                                            std::to_string(device_count) + " devices)");
  }
  if (req.mode == attach_mode::dynamic && !req.move_notify) {
    return fail(errc::invalid_argument,
                "attach " + buffer_name(id) + ": a dynamic attachment needs move_notify");
  }
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  lock_t lock(mutex_);
  if (buf->owner_released) return fail(errc::bad_state, buffer_name(id) + ": already freed");

  auto att = std::make_shared<attachment>(attachment{next_attachment_id_++, owner, req.device,
                                                     req.mode, req.peer_capable, req.move_notify});
  if (req.mode == attach_mode::pinned) {
    // Bytes held still count once per buffer, however many importers pin it
    // (a no_evict buffer was counted when it was allocated). Checked before
    // any migration, so a refusal costs nothing.
    const bool first_pin = std::none_of(buf->attachments.begin(), buf->attachments.end(),
                                        [](const auto& a) { return a->mode == attach_mode::pinned; });
    const bool counts = first_pin && !buf->no_evict;
    if (counts && pinned_bytes_ + buf->size > config_.pinned_limit) {
      return fail(errc::quota_exceeded, "attach " + buffer_name(id) + ": pinned limit " +
                                            format_bytes(config_.pinned_limit) + " would be passed (" +
                                            format_bytes(pinned_bytes_) + " pinned, " +
                                            format_bytes(buf->size) + " more)");
    }
    std::string reason;
    bool peer = false;
    if (!reachable(*att, buf->domain, &reason, &peer)) {
      if (buf->pins > 0) {
        return fail(errc::unsupported,
                    "attach " + buffer_name(id) + ": pinned in " +
                        heaps_[static_cast<std::size_t>(buf->domain)]->name() + ", which device " +
                        std::to_string(req.device) + " cannot reach (" + reason + ")");
      }
      std::vector<int> targets;
      for (const auto& p : buf->placements) {
        const int d = domain_of(p);
        std::string r;
        bool pr = false;
        if (d >= 0 && reachable(*att, d, &r, &pr)) targets.push_back(d);
      }
      if (targets.empty()) targets.push_back(domain_of(placement::pinned()));
      if (auto s = migrate_locked(lock, *buf, targets, cancel,
                                  "pin for device " + std::to_string(req.device));
          !s) {
        return std::move(s).err();
      }
    }
    if (counts) pinned_bytes_ += buf->size;
    add_pin_locked(*buf);
  }
  buf->attachments.push_back(att);
  attachment_index_[att->id] = att;
  attachment_buffer_[att->id] = buf->id;
  return att->id;
}

status memory_manager::detach(owner_id owner, attachment_id id) {
  auto locked = lock_attachment(owner, id);
  if (!locked) return std::move(locked).err();
  auto& [buf, att, resv] = *locked;
  std::lock_guard lock(mutex_);
  std::erase(buf->attachments, att);
  attachment_index_.erase(id);
  attachment_buffer_.erase(id);
  if (att->mode == attach_mode::pinned) {
    drop_pin_locked(*buf);
    const bool last_pin = std::none_of(buf->attachments.begin(), buf->attachments.end(),
                                       [](const auto& a) { return a->mode == attach_mode::pinned; });
    if (last_pin && !buf->no_evict) pinned_bytes_ -= buf->size;
  }
  if (buf->owner_released && buf->attachments.empty()) destroy_locked(*buf);
  return ok();
}

mapping memory_manager::make_mapping_locked(const buffer& buf, const attachment& att) const {
  mapping m;
  const auto& h = *heaps_[static_cast<std::size_t>(buf.domain)];
  m.where = h.where();
  const auto& span = buf.backing.span;
  const std::uint64_t base = att.device < 0
                                 ? reinterpret_cast<std::uint64_t>(span.block->host_ptr)
                                 : span.block->device_ptr;
  m.ranges.push_back({base + span.offset, buf.size});
  (void)reachable(att, buf.domain, &m.reason, &m.peer);
  m.wait_for = join(buf.resv.fences(fence_usage::kernel));
  m.generation = buf.generation;
  return m;
}

result<mapping> memory_manager::map(owner_id owner, attachment_id id, const cancel_token* cancel) {
  auto locked = lock_attachment(owner, id);
  if (!locked) return std::move(locked).err();
  auto& [buf, att, resv] = *locked;
  lock_t lock(mutex_);
  if (buf->lost) {
    return fail(errc::device_lost, buffer_name(buf->id) + ": a move failed and its contents are lost");
  }
  std::string reason;
  bool peer = false;
  if (!reachable(*att, buf->domain, &reason, &peer)) {
    const std::string where = heaps_[static_cast<std::size_t>(buf->domain)]->name();
    if (buf->pins > 0) {
      return fail(errc::unsupported, "map " + attachment_name(id) + ": " + buffer_name(buf->id) +
                                         " is pinned in " + where + ", which " +
                                         (att->device < 0 ? std::string("the CPU")
                                                          : "device " + std::to_string(att->device)) +
                                         " cannot reach (" + reason + ")");
    }
    // Migrate to a placement the importer reaches, else to pinned host
    // memory, which every device and the CPU reach.
    std::vector<int> targets;
    for (const auto& p : buf->placements) {
      const int d = domain_of(p);
      std::string r;
      bool pr = false;
      if (d >= 0 && d != buf->domain && reachable(*att, d, &r, &pr)) targets.push_back(d);
    }
    if (const int pinned = domain_of(placement::pinned());
        std::find(targets.begin(), targets.end(), pinned) == targets.end()) {
      targets.push_back(pinned);
    }
    if (auto s = migrate_locked(lock, *buf, targets, cancel, "map for " + attachment_name(id) +
                                                                  " (" + reason + " in " + where + ")");
        !s) {
      return std::move(s).err();
    }
  }
  touch_locked(*buf);
  att->mapped = true;
  att->mapped_generation = buf->generation;
  return make_mapping_locked(*buf, *att);
}

status memory_manager::unmap(owner_id owner, attachment_id id) {
  auto locked = lock_attachment(owner, id);
  if (!locked) return std::move(locked).err();
  auto& att = locked->att;
  if (!att->mapped) return fail(errc::bad_state, "unmap " + attachment_name(id) + ": not mapped");
  att->mapped = false;
  return ok();
}

status memory_manager::add_fence(owner_id owner, buffer_id id, fence_ptr f, fence_usage usage,
                                 std::optional<fence_clock::time_point> deadline) {
  if (!f) return fail(errc::invalid_argument, "add_fence " + buffer_name(id) + ": null fence");
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  {
    std::lock_guard lock(mutex_);
    auto& list = owner_fences_[owner];
    std::erase_if(list, [](const std::weak_ptr<fence>& w) {
      auto f2 = w.lock();
      return !f2 || f2->is_signaled();
    });
    list.push_back(f);
  }
  if (auto r = buf->resv.reserve_fences(1); !r) return std::move(r).err().prefixed(buffer_name(id));
  buf->resv.add_fence(f, usage);
  if (deadline) watchdog_.watch(f, *deadline);
  return ok();
}

result<validate_report> memory_manager::validate(owner_id owner, std::span<const buffer_id> ids,
                                                 const cancel_token* cancel) {
  std::vector<std::shared_ptr<buffer>> bufs;
  {
    std::lock_guard lock(mutex_);
    for (auto id : ids) {
      auto b = find_locked(owner, id);
      if (!b) return unknown_buffer(owner, id);
      bufs.push_back(std::move(b));
    }
  }
  std::vector<ww_mutex*> locks;
  for (auto& b : bufs) locks.push_back(&b->resv.mutex());
  ww_acquire_ctx ctx;
  if (auto s = lock_all(ctx, locks, cancel); !s) return std::move(s).err().prefixed("validate");
  ctx.done();

  validate_report report;
  {
    lock_t lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    for (auto& b : bufs) {
      if (b->destroyed) continue;
      const int preferred = domain_of(b->placements.front());
      if (b->domain == preferred) {
        ++report.in_place;
        touch_locked(*b);
        continue;
      }
      if (b->pins > 0) continue;  // pinned where an importer needs it
      if (now - b->last_promotion < config_.promote_interval) {
        ++report.deferred;
        ++counters_.promotions_deferred;
        continue;
      }
      b->last_promotion = now;
      auto room = make_room_locked(lock, {preferred}, b->size, b->alignment, b.get(),
                                   deadline_after(std::chrono::seconds(30)), cancel,
                                   "validate " + buffer_name(b->id));
      if (!room) {
        if (room.code() == errc::cancelled || room.code() == errc::timed_out) {
          lock.unlock();
          ctx.unlock_all();
          return std::move(room).err();
        }
        ++report.no_room;
        continue;
      }
      if (b->destroyed) {
        heaps_[static_cast<std::size_t>(room->domain)]->release(std::move(room->allocation), {});
        continue;
      }
      if (move_locked(*b, std::move(*room), false)) {
        ++report.promoted;
        ++counters_.promotions;
      }
    }
  }
  ctx.unlock_all();
  return report;
}

result<cpu_mapping> memory_manager::begin_cpu_access(owner_id owner, buffer_id id,
                                                     cpu_access_mode mode,
                                                     fence_clock::duration timeout,
                                                     const cancel_token* cancel) {
  std::shared_ptr<buffer> buf;
  cpu_mapping out;
  {
    auto locked = lock_buffer(owner, id);
    if (!locked) return std::move(locked).err();
    buf = locked->buf;
    lock_t lock(mutex_);
    if (buf->lost) return fail(errc::device_lost, buffer_name(id) + ": a move failed and its contents are lost");
    if (!cpu_reachable(buf->domain)) {
      if (buf->pins > 0) {
        return fail(errc::unsupported, "begin_cpu_access " + buffer_name(id) +
                                           ": pinned in VRAM the CPU cannot map");
      }
      std::vector<int> targets;
      for (const auto& p : buf->placements) {
        const int d = domain_of(p);
        if (d >= 0 && cpu_reachable(d)) targets.push_back(d);
      }
      if (targets.empty()) {
        return fail(errc::unsupported, "begin_cpu_access " + buffer_name(id) + ": placements " +
                                           placements_text(buf->placements) +
                                           " include no memory the CPU can map");
      }
      if (auto s = migrate_locked(lock, *buf, targets, cancel, "CPU access"); !s) return std::move(s).err();
    }
    // Held still until end_cpu_access: the pointer must not dangle.
    add_pin_locked(*buf);
    ++cpu_accesses_[{owner, id}];
    touch_locked(*buf);
    out.data = static_cast<char*>(buf->backing.span.block->host_ptr) + buf->backing.span.offset;
    out.size = buf->size;
  }
  // Wait without the buffer lock, so evictors and other users are not held
  // up; the pin keeps the memory where it is.
  const auto usage = mode == cpu_access_mode::read ? fence_usage::write : fence_usage::read;
  if (auto s = buf->resv.wait(usage, timeout, cancel); !s) {
    (void)end_cpu_access(owner, id);
    return std::move(s).err().prefixed("begin_cpu_access " + buffer_name(id));
  }
  return out;
}

status memory_manager::end_cpu_access(owner_id owner, buffer_id id) {
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  std::lock_guard lock(mutex_);
  auto it = cpu_accesses_.find({owner, id});
  if (it == cpu_accesses_.end()) {
    return fail(errc::bad_state, "end_cpu_access " + buffer_name(id) + ": no CPU access begun");
  }
  if (--it->second == 0) cpu_accesses_.erase(it);
  drop_pin_locked(*buf);
  return ok();
}

result<exported_memory> memory_manager::export_fd(owner_id owner, buffer_id id) {
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  std::lock_guard lock(mutex_);
  auto e = backend_.export_fd(buf->backing.span);
  if (!e) return std::move(e).err().prefixed("export " + buffer_name(id));
  return e;
}

result<buffer_info> memory_manager::info(owner_id owner, buffer_id id) const {
  std::lock_guard lock(mutex_);
  auto buf = find_locked(owner, id);
  if (!buf) return unknown_buffer(owner, id);
  buffer_info i;
  i.id = buf->id;
  i.owner = buf->owner;
  i.name = buf->name;
  i.size = buf->size;
  i.where = heaps_[static_cast<std::size_t>(buf->domain)]->where();
  i.attachments = buf->attachments.size();
  i.pins = buf->pins;
  for (auto& f : buf->resv.fences()) i.fences += f->is_signaled() ? 0 : 1;
  i.generation = buf->generation;
  i.lost = buf->lost;
  return i;
}

std::vector<buffer_info> memory_manager::buffers() const {
  std::vector<std::pair<owner_id, buffer_id>> ids;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, b] : buffers_) ids.emplace_back(b->owner, id);
  }
  std::vector<buffer_info> out;
  for (auto [o, id] : ids) {
    if (auto i = info(o, id)) out.push_back(std::move(*i));
  }
  return out;
}

void memory_manager::set_quota(owner_id owner, std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  quotas_[owner] = bytes;
}

std::size_t memory_manager::release_owner(owner_id owner) {
  std::vector<attachment_id> atts;
  std::vector<buffer_id> bufs;
  std::vector<fence_ptr> fences;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, w] : attachment_index_) {
      if (auto a = w.lock(); a && a->owner == owner) atts.push_back(id);
    }
    for (auto& [id, b] : buffers_) {
      if (b->owner == owner && !b->owner_released) bufs.push_back(id);
    }
    if (auto it = owner_fences_.find(owner); it != owner_fences_.end()) {
      for (auto& w : it->second) {
        if (auto f = w.lock()) fences.push_back(std::move(f));
      }
      owner_fences_.erase(it);
    }
    quotas_.erase(owner);
  }
  // Its fences will never be signaled by it now: nobody may wait forever.
  for (auto& f : fences) (void)f->signal(-ECONNRESET);
  for (auto id : atts) (void)detach(owner, id);
  // Its CPU accesses end with it.
  {
    std::lock_guard lock(mutex_);
    std::erase_if(cpu_accesses_, [&](const auto& e) {
      if (e.first.first != owner) return false;
      if (auto it = buffers_.find(e.first.second); it != buffers_.end()) it->second->pins -= e.second;
      return true;
    });
  }
  std::size_t freed = 0;
  for (auto id : bufs) {
    if (free(owner, id)) ++freed;
  }
  return freed;
}

manager_stats memory_manager::stats() {
  std::lock_guard lock(mutex_);
  reap_locked();
  manager_stats s;
  for (const auto& h : heaps_) s.domains.push_back(h->stats());
  std::map<owner_id, owner_stats> owners;
  for (const auto& [id, b] : buffers_) {
    if (b->owner_released) continue;
    auto& o = owners[b->owner];
    o.owner = b->owner;
    o.bytes += b->size;
    o.buffers += 1;
  }
  for (const auto& [o, q] : quotas_) {
    owners[o].owner = o;
    owners[o].quota = q;
  }
  for (auto& [o, st] : owners) s.owners.push_back(st);
  s.counters = counters_;
  s.counters.failed_moves = failed_moves_->load();
  s.pinned_bytes = pinned_bytes_;
  s.pinned_limit = config_.pinned_limit;
  return s;
}

}  // namespace xbuf
