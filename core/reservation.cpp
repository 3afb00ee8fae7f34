// SPDX-License-Identifier: MIT
//
// reservation.cpp - per-buffer lock plus fence container (see reservation.hpp).
//
// Implementation notes
//   - Writers hold the reservation lock (mutex_), so there is exactly one
//     writer at a time. The writer may READ entries_ without the snapshot
//     mutex (concurrent readers only read too); every WRITE to entries_ is
//     done under snapshot_mutex_, and readers copy under it. That is the
//     whole snapshot scheme: a plain leaf lock instead of a seqcount retry
//     loop, because copying a handful of shared_ptrs is cheap.
//   - No fence function runs under snapshot_mutex_ (is_signaled of a polled
//     fence may signal it and run callbacks that read this reservation), and
//     fence references dropped by a prune or a replacement are released after
//     snapshot_mutex_ is unlocked, so a fence's destructor never runs under it.
#include "core/reservation.hpp"

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>

namespace xbuf {

namespace {

std::string describe(const reservation* r) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "reservation@%p", static_cast<const void*>(r));
  return buf;
}

}  // namespace

std::string_view to_string(fence_usage usage) noexcept {
  switch (usage) {
    case fence_usage::kernel: return "kernel";
    case fence_usage::write: return "write";
    case fence_usage::read: return "read";
    case fence_usage::bookkeep: return "bookkeep";
  }
  return "unknown";
}

reservation::~reservation() {
  assert(!mutex_.is_locked() && "reservation destroyed while locked");
}

void reservation::prune_signaled_locked() noexcept {
  std::size_t i = 0;
  while (i < entries_.size()) {
    if (!entries_[i].f->is_signaled()) {
      ++i;
      continue;
    }
    fence_ptr dead;
    {
      mutex_lock guard(snapshot_mutex_);
      dead = std::move(entries_[i].f);
      // Order is not kept: a swap with the last entry keeps pruning O(1) each.
      if (i + 1 != entries_.size()) entries_[i] = std::move(entries_.back());
      entries_.pop_back();
    }
    // `dead` is released here, outside snapshot_mutex_; entry i is re-tested.
  }
}

status reservation::reserve_fences(std::size_t n) {
  if (!mutex_.held_by_this_thread()) {
    return fail(errc::bad_state,
                describe(this) + ": reserve_fences needs the reservation lock held by the caller");
  }
  mutex_.assert_held();  // checked just above; tells -Wthread-safety
  if (n == 0) return ok();
  prune_signaled_locked();

  const std::size_t want = std::max(reserved_, n);
  const std::size_t size = entries_.size();
  if (want > entries_.max_size() - size) {
    return fail(errc::out_of_memory, describe(this) + ": cannot reserve " + std::to_string(n) +
                                         " fence slots (too many)");
  }
  const std::size_t needed = size + want;
  if (needed > entries_.capacity()) {
    // Allocate outside the snapshot mutex; only the (noexcept) moves and the
    // swap happen under it, so readers never see a half-moved vector.
    std::vector<entry> bigger;
    try {
      bigger.reserve(std::max({needed, entries_.capacity() * 2, std::size_t{4}}));
    } catch (const std::bad_alloc&) {
      return fail(errc::out_of_memory,
                  describe(this) + ": no memory for " + std::to_string(needed) + " fence slots");
    } catch (const std::length_error&) {
      return fail(errc::out_of_memory,
                  describe(this) + ": cannot hold " + std::to_string(needed) + " fence slots");
    }
    {
      mutex_lock guard(snapshot_mutex_);
      for (entry& e : entries_) bigger.push_back(std::move(e));  // within capacity: no throw
      entries_.swap(bigger);
    }
    // `bigger` now holds moved-from entries; freed here, outside the mutex.
  }
  reserved_ = want;
  return ok();
}

void reservation::add_fence(fence_ptr f, fence_usage usage) {
  assert(mutex_.held_by_this_thread() && "add_fence needs the reservation lock");
  assert(f != nullptr && "add_fence: null fence");
  assert(reserved_ > 0 && "add_fence without reserve_fences: the add could fail");
  if (f == nullptr) return;
  prune_signaled_locked();
  if (reserved_ > 0) --reserved_;

  for (entry& e : entries_) {
    // Same timeline, not earlier, and visible to every wait that saw the old
    // entry: the old fence signals no later than `f`, so it is redundant.
    if (e.f->context() == f->context() && f->seqno() >= e.f->seqno() && usage <= e.usage) {
      {
        mutex_lock guard(snapshot_mutex_);
        std::swap(e.f, f);
        e.usage = usage;
      }
      return;  // `f` (now the old fence) is released outside the mutex
    }
  }
  mutex_lock guard(snapshot_mutex_);
  // Within capacity thanks to the reservation (invariant in the header), so
  // this does not allocate. Without one (a bug, asserted above) it may.
  entries_.push_back(entry{std::move(f), usage});
}

std::vector<fence_ptr> reservation::fences(fence_usage max_usage) const {
  std::vector<fence_ptr> out;
  mutex_lock guard(snapshot_mutex_);
  out.reserve(entries_.size());
  for (const entry& e : entries_) {
    if (e.usage <= max_usage) out.push_back(e.f);
  }
  return out;
}

std::size_t reservation::fence_count() const noexcept {
  mutex_lock guard(snapshot_mutex_);
  return entries_.size();
}

// Racy by nature without the lock, as documented: for tests and stats.
std::size_t reservation::reserved_slots() const noexcept XBUF_NO_THREAD_SAFETY_ANALYSIS {
  return reserved_;
}

status reservation::wait(fence_usage usage, fence_clock::duration timeout,
                         const cancel_token* cancel) const {
  // One deadline for the whole set, so N fences cannot take N timeouts.
  const auto deadline = deadline_after(timeout);
  for (const fence_ptr& f : fences(usage)) {
    if (status s = f->wait_until(deadline, cancel); !s) {
      return std::move(s).err().prefixed(describe(this) + ": waiting for " +
                                         std::string(to_string(usage)) + " fences (" +
                                         f->describe() + ")");
    }
  }
  return ok();
}

bool reservation::test_signaled(fence_usage usage) const {
  const auto list = fences(usage);
  return std::all_of(list.begin(), list.end(), [](const fence_ptr& f) { return f->is_signaled(); });
}

bool reservation::test_signaled_above(fence_usage usage) const {
  std::vector<entry> snapshot;
  {
    mutex_lock guard(snapshot_mutex_);
    snapshot = entries_;
  }
  return std::all_of(snapshot.begin(), snapshot.end(), [usage](const entry& e) {
    return e.usage <= usage || e.f->is_signaled();
  });
}

}  // namespace xbuf
