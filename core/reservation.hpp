// SPDX-License-Identifier: MIT
//
// reservation.hpp - per-buffer lock plus fence container (dma_resv analog).
//
// Overview
//   Every buffer has one reservation. It holds
//     - the buffer's lock, a ww_mutex, so a job can lock all its buffers in
//       one acquire context without deadlock (ww_mutex.hpp), and
//     - the fences of the work that still uses the buffer, each with a usage:
//         kernel   < write < read < bookkeep
//         (moves,    (job     (job    (other work that must only delay
//          clears)    writes)  reads)  freeing, e.g. a TLB flush)
//   Waiting "for usage U" waits for every fence of usage <= U:
//     - a reader waits for write (kernel + write fences),
//     - a writer, a mover or a free waits for read or bookkeep (all fences).
//   It waits for EVERY such fence, not just the last writer: after a device
//   reset a read fence may be signaled (with an error) while the move fence
//   it depended on is still pending, so no fence may be taken to imply
//   another unless both are on one timeline.
//
// Reserve, then add
//   reserve_fences(n) is the only step that can fail (it allocates); it
//   guarantees that the next n add_fence() calls cannot fail. So a job
//   reserves on all its buffers before submitting, and attaches the job's
//   fence afterwards, when there is no way back.
//
// What add_fence keeps
//   - Signaled fences are pruned on every add and reserve, so a long-lived
//     buffer's container holds at most its unsignaled fences plus the new one.
//   - A new fence replaces an existing entry of the same fence context when
//     it is not earlier on that timeline (seqno >= the old one's) and its
//     usage is no weaker (new usage <= old usage): fences of one context
//     signal in seqno order, so every wait that saw the old entry now sees one
//     that signals no earlier. Otherwise the new fence is appended.
//
// Rules
//   - Lock order: reservation locks (any order, through an acquire context)
//     -> manager/heap mutex -> fence lock (leaf). The reservation's internal
//     snapshot mutex is a leaf below the reservation lock; no fence function
//     is called while it is held (a fence's is_signaled may run callbacks).
//   - reserve_fences and add_fence need the reservation lock, held by the
//     calling thread (asserted; reserve_fences also reports errc::bad_state).
//   - fences(), fence_count(), wait() and test_signaled() do NOT need the
//     lock: they read a consistent snapshot taken under the snapshot mutex.
//     A waiter therefore never blocks whoever adds fences or locks the buffer,
//     and must not hold the reservation lock while waiting for fences that
//     the lock holder would signal.
//   - Fence callbacks must not call reserve_fences/add_fence (they would need
//     the reservation lock); they may call fences() / test_signaled().
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string_view>
#include <vector>

#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"
#include "core/ww_mutex.hpp"

namespace xbuf {

// How a fence uses the buffer. Ordered: waiting for usage U waits for every
// fence whose usage is <= U.
enum class fence_usage : std::uint8_t {
  kernel = 0,    // memory management: moves, clears (the buffer's contents change under everyone)
  write = 1,     // a job writes the buffer
  read = 2,      // a job reads the buffer
  bookkeep = 3,  // work that must only delay freeing or moving (never waited for by readers/writers)
};

// "kernel", "write", "read", "bookkeep".
std::string_view to_string(fence_usage usage) noexcept;

class reservation {
 public:
  // Context: does not allocate; never blocks.
  reservation() = default;
  // Asserts (debug) that the lock is not held. Drops the fence references
  // (the fences themselves live on while anyone else holds them).
  ~reservation();
  reservation(const reservation&) = delete;
  reservation& operator=(const reservation&) = delete;

  // The buffer lock. Lock it through an acquire context (lock_all) when
  // locking several buffers; plainly for a single one; trylock to evict.
  // Ownership: borrowed, lives as long as the reservation.
  ww_mutex& mutex() noexcept XBUF_RETURN_CAPABILITY(mutex_) { return mutex_; }
  const ww_mutex& mutex() const noexcept XBUF_RETURN_CAPABILITY(mutex_) { return mutex_; }

  // Debug-build assertion that the calling thread holds the lock.
  // Also tells -Wthread-safety so (see ww_mutex).
  void assert_held() const noexcept XBUF_ASSERT_CAPABILITY(mutex_) { mutex_.assert_held(); }

  // Makes room so that the next `n` add_fence() calls cannot fail (at least
  // `n` free slots; reserving again with a smaller n keeps the larger
  // guarantee). Prunes signaled fences first.
  // n == 0 is a no-op (ok).
  // Returns ok, errc::bad_state (the calling thread does not hold the lock)
  // or errc::out_of_memory (nothing changed but the pruning).
  // Context: may allocate; may run fence callbacks (through is_signaled of a
  // polled fence); never blocks on a fence.
  // Locking: reservation lock held by the caller.
  status reserve_fences(std::size_t n);

  // Adds `f` with `usage`, using one reserved slot (replacing or appending as
  // in the file comment). Prunes signaled fences. Cannot fail.
  // Preconditions (asserted): the calling thread holds the lock; a slot was
  // reserved; f is not null (a null fence is ignored in release builds).
  // Context: does not allocate (the slot was reserved); may run fence
  // callbacks of polled fences. Locking: reservation lock held by the caller.
  // Ownership: keeps a reference to `f`.
  void add_fence(fence_ptr f, fence_usage usage) XBUF_REQUIRES(mutex_);

  // Every fence with usage <= max_usage, in no particular order (a copy;
  // fences already signaled may be included until the next prune).
  // Context: allocates the result; never blocks on a fence.
  // Locking: none needed (snapshot).
  std::vector<fence_ptr> fences(fence_usage max_usage = fence_usage::bookkeep) const;

  // Number of fences kept, of any usage and state. For stats and tests.
  // Locking: none needed.
  std::size_t fence_count() const noexcept;

  // Slots reserved and not yet used by add_fence. For assertions and tests.
  // Locking: reservation lock held by the caller (the value is the holder's).
  std::size_t reserved_slots() const noexcept;

  // Waits until every fence with usage <= `usage` that is in the reservation
  // when the call starts has signaled (whatever error it carries), the
  // timeout passes, or `cancel` fires. Fences added later are not waited for.
  // Returns ok, errc::timed_out, or errc::cancelled; a zero timeout only tests.
  // Context: blocks. Locking: none needed; must not be called holding a lock
  // the signalers of these fences need (e.g. this reservation's lock when the
  // signaler must take it).
  status wait(fence_usage usage, fence_clock::duration timeout = wait_forever,
              const cancel_token* cancel = nullptr) const;

  // True if every fence with usage <= `usage` has signaled.
  // Context: never blocks; may run callbacks of polled fences.
  // Locking: none needed.
  bool test_signaled(fence_usage usage) const;
  // True if every fence with usage > `usage` has signaled: with KERNEL, "no
  // job or client is using it" - moves and clears may still be pending.
  // Context, Locking: as test_signaled.
  bool test_signaled_above(fence_usage usage) const;

 private:
  struct entry {
    fence_ptr f;
    fence_usage usage;
  };

  // Removes signaled entries. Precondition: reservation lock held by the caller.
  void prune_signaled_locked() noexcept;

  ww_mutex mutex_;
  // Guards the writes to entries_ (always under mutex_ too) and every read
  // from a thread that does not hold mutex_. A leaf: held only to copy or
  // move fence_ptrs, never while calling into a fence.
  mutable ::xbuf::mutex snapshot_mutex_;
  // Invariant: entries_.capacity() >= entries_.size() + reserved_.
  std::vector<entry> entries_;   // written under mutex_ + snapshot_mutex_
  std::size_t reserved_ XBUF_GUARDED_BY(mutex_) = 0;
};

}  // namespace xbuf
