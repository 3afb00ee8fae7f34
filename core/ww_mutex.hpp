// SPDX-License-Identifier: MIT
//
// ww_mutex.hpp - a deadlock-avoiding lock for taking many buffer locks at
// once (Linux ww_mutex analog).
//
// Overview
//   Jobs name their buffers in any order, so two jobs that lock "A then B" and
//   "B then A" would deadlock with plain mutexes. A ww_mutex is taken through
//   an *acquire context* (ww_acquire_ctx). Every context gets a stamp from a
//   global counter when it is created: a lower stamp is an older context.
//   When two contexts collide on a lock, the younger one is told to back off:
//
//     ww_acquire_ctx ctx;                      // one per "lock this set" attempt
//     for each lock l in the set:
//       status s = l->lock(ctx);
//       if (s.code() == errc::would_deadlock) {
//         ctx.unlock_all();                    // drop everything ...
//         (void)ctx.contended()->lock_slow(ctx);  // ... wait for the contended one
//         restart with the others;             // (lock(ctx) on it now says already_exists)
//       }
//     ctx.done();                              // acquire phase over
//     ... use the buffers ...
//     ctx.unlock_all();
//
//   lock_all(ctx, locks) does exactly this dance; prefer it to hand-written loops.
//
// Algorithm: wait-die (not wound-wait)
//   A context that asks for a lock held by a YOUNGER context waits; one that
//   asks for a lock held by an OLDER context gets errc::would_deadlock. So
//   every wait edge goes from older to younger, and a cycle of waits would
//   need a stamp smaller than itself: no deadlock, in any lock order. The
//   check is repeated every time a waiter wakes (each unlock wakes all
//   waiters), so it also holds when the holder changes during a wait.
//   A context that holds nothing never backs off: it cannot be part of a
//   cycle (nobody waits for it), which is what makes lock_slow() safe.
//   A context keeps its stamp across back-offs, so a backed-off context only
//   grows older relative to newcomers and eventually wins: no starvation as
//   long as the SAME context is reused for the retry.
//
//   Why not wound-wait: there the older context "wounds" the younger holder,
//   which must notice and back off at its next lock call or while it sleeps
//   on another lock - cross-thread state that every wait loop must poll. With
//   wait-die every decision is made by the requesting thread itself, under
//   the one lock it is asking for. The cost is more back-offs of young
//   contexts (they die instead of being wounded only when really in the way),
//   which is cheap here: backing off drops a few buffer locks, no I/O.
//
// Rules
//   - Lock order (whole project, written once): reservation locks (any order,
//     through an acquire context) -> manager/heap mutex -> fence lock (leaf).
//     So: never take a ww_mutex while holding a manager/heap mutex or a fence
//     lock (trylock() is the exception: it never waits).
//   - Take several ww_mutexes only through ONE acquire context. A plain
//     lock() (no context) is for paths that hold a single buffer lock; while
//     holding it take no other ww_mutex except with trylock().
//   - After errc::would_deadlock the context must drop every lock it holds
//     before it takes any other (asserted in debug builds), then call
//     lock_slow() on the contended lock.
//   - The thread that locked a ww_mutex unlocks it (as std::mutex). An
//     acquire context is used by one thread at a time, and must outlive the
//     locks it holds: destroying it with locks held is asserted.
//   - unlock() never fails and never blocks for long.
//   - Waits are interruptible through a cancel_token (errc::cancelled), so a
//     job that is torn down does not hang on a buffer lock.
//   - Fence callbacks and fence signaling paths take no ww_mutex (fence.hpp).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <condition_variable>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

class ww_mutex;

// One attempt to lock a set of ww_mutexes (ww_acquire_ctx analog).
// Not copyable or movable: locks remember their holder by address.
class ww_acquire_ctx {
 public:
  // Takes the next stamp from the global counter.
  // Context: may allocate (bookkeeping for a few locks); never blocks.
  ww_acquire_ctx();
  // Asserts (debug) that no lock is still held: release with unlock_all()
  // first. Destructors never fail, so a release build unlocks them.
  ~ww_acquire_ctx();
  ww_acquire_ctx(const ww_acquire_ctx&) = delete;
  ww_acquire_ctx& operator=(const ww_acquire_ctx&) = delete;

  // Lower = older. Unique per context in this process.
  std::uint64_t stamp() const noexcept { return stamp_; }

  // Marks the end of the acquire phase (ww_acquire_done): any further
  // lock/lock_slow/trylock with this context is a bug (asserted in debug).
  // Unlocking stays allowed.
  void done() noexcept { done_ = true; }
  bool is_done() const noexcept { return done_; }

  // Unlocks every ww_mutex this context holds, newest first.
  // Context: never blocks for long; never fails. Locking: caller is the
  // thread that took them.
  void unlock_all() noexcept;

  // Number of locks held through this context.
  std::size_t held_count() const noexcept { return held_.size(); }

  // The lock whose lock() last returned errc::would_deadlock, until it is
  // taken (by lock_slow or lock); null otherwise. Borrowed pointer.
  ww_mutex* contended() const noexcept { return contending_; }

  // How many times this context was told to back off (for stats and tests;
  // readable from any thread).
  std::uint64_t backoffs() const noexcept { return backoffs_.load(std::memory_order_relaxed); }

 private:
  friend class ww_mutex;
  void forget(const ww_mutex* m) noexcept;

  const std::uint64_t stamp_;
  std::vector<ww_mutex*> held_;       // locks held through this context, in lock order
  ww_mutex* contending_ = nullptr;    // set on would_deadlock, cleared when that lock is taken
  std::atomic<std::uint64_t> backoffs_{0};  // atomic only so that stats may read it from elsewhere
  bool done_ = false;
};

// A wait-die mutex (see the file comment). Also BasicLockable (lock/unlock),
// so std::lock_guard / std::unique_lock work for the plain, context-free path.
// A capability for -Wthread-safety: members a reservation lock guards say
// XBUF_GUARDED_BY(resv.mutex()). The analysis follows lock()/trylock()/
// unlock() but not std::unique_lock or acquire contexts: code that locks
// that way calls assert_held() before touching what the lock guards.
class XBUF_CAPABILITY("ww_mutex") ww_mutex {
 public:
  ww_mutex() = default;
  // Asserts (debug) that it is not locked.
  ~ww_mutex();
  ww_mutex(const ww_mutex&) = delete;
  ww_mutex& operator=(const ww_mutex&) = delete;

  // Locks through `ctx`. Returns ok, or
  //   errc::would_deadlock - held by an OLDER context while `ctx` holds other
  //                          locks: drop them all, then lock_slow() this one;
  //   errc::already_exists - `ctx` already holds this lock (nothing changes);
  //   errc::cancelled      - `cancel` fired while waiting (nothing held);
  //   errc::out_of_memory  - the context's bookkeeping could not grow.
  // Context: may block (waits for a younger holder or a context-free holder);
  // may allocate (ctx bookkeeping). Not from fence callbacks.
  // Locking: must not hold a manager/heap mutex or a fence lock.
  status lock(ww_acquire_ctx& ctx, const cancel_token* cancel = nullptr);

  // After a back-off: waits for this lock with `ctx` holding nothing
  // (asserted), so it cannot be told to back off. Returns ok,
  // errc::cancelled or errc::out_of_memory (as lock).
  // Context, Locking: as lock(ctx).
  status lock_slow(ww_acquire_ctx& ctx, const cancel_token* cancel = nullptr);

  // Context-free lock for single-buffer paths. Waits for any holder.
  // Context: blocks. Locking: hold no other ww_mutex (except by trylock).
  void lock() XBUF_ACQUIRE();
  // Cancellable context-free lock: ok or errc::cancelled.
  status lock(const cancel_token* cancel);

  // Never waits: true if it took the lock (context-free). For eviction paths.
  // Context: never blocks; callable with the manager mutex held.
  [[nodiscard]] bool trylock() noexcept XBUF_TRY_ACQUIRE(true);

  // Never waits; records the lock in `ctx` on success. Returns ok,
  // errc::busy (held by someone else), errc::already_exists (`ctx` holds it
  // already - an evictor may use a buffer its own context has locked), or
  // errc::out_of_memory (ctx bookkeeping).
  status trylock(ww_acquire_ctx& ctx);

  // Unlocks; removes the lock from its context if it was taken through one.
  // Precondition (asserted): locked by the calling thread.
  // Context: never fails, never blocks for long; wakes all waiters.
  void unlock() noexcept XBUF_RELEASE();

  // Queries. Racy by nature unless the caller holds the lock; meant for
  // assertions, tests and stats.
  bool is_locked() const noexcept;
  bool held_by(const ww_acquire_ctx& ctx) const noexcept;
  bool held_by_this_thread() const noexcept;

  // Debug-build assertion that the calling thread holds the lock (with or
  // without a context). No-op with NDEBUG.
  // Also tells -Wthread-safety that the lock is held (after a lock taken
  // through std::unique_lock or an acquire context, which it cannot follow).
  void assert_held() const noexcept XBUF_ASSERT_CAPABILITY(this);

 private:
  enum class acquire_mode { normal, slow, plain };
  status acquire(ww_acquire_ctx* ctx, const cancel_token* cancel, acquire_mode mode);
  // Precondition: mutex_ held and the lock is free.
  void take_locked(ww_acquire_ctx* ctx) noexcept XBUF_REQUIRES(mutex_);
  // Precondition: mutex_ held and the lock is held by someone else.
  bool must_back_off_locked(const ww_acquire_ctx& ctx) const noexcept XBUF_REQUIRES(mutex_);

  mutable mutex mutex_;       // internal, guards the fields below; never held while waiting
  std::condition_variable cv_;     // notified (under mutex_) on unlock and on cancel
  bool locked_ XBUF_GUARDED_BY(mutex_) = false;
  ww_acquire_ctx* holder_ XBUF_GUARDED_BY(mutex_) = nullptr;  // null for a context-free holder
  std::uint64_t holder_stamp_ XBUF_GUARDED_BY(mutex_) = 0;  // holder_->stamp(), copied
  std::thread::id owner_thread_ XBUF_GUARDED_BY(mutex_);
};

// Locks every lock in `locks` through `ctx`, doing the back-off dance:
// on errc::would_deadlock it drops all, waits for the contended lock with
// lock_slow(), and retries the rest. Duplicates in `locks` are fine.
// Returns ok (ctx holds exactly the distinct locks of `locks`), or, with
// nothing held:
//   errc::cancelled        - `cancel` fired while waiting;
//   errc::invalid_argument - a null entry;
//   errc::bad_state        - `ctx` already held locks on entry (the dance
//                            would have to drop them behind the caller's back);
//   errc::out_of_memory    - ctx bookkeeping could not grow.
// Context, Locking: as ww_mutex::lock(ctx).
status lock_all(ww_acquire_ctx& ctx, std::span<ww_mutex* const> locks,
                const cancel_token* cancel = nullptr);

}  // namespace xbuf
