// SPDX-License-Identifier: MIT
//
// ww_mutex.cpp - wait-die mutex and acquire contexts (see ww_mutex.hpp).
//
// Implementation notes
//   - All state of a ww_mutex is guarded by its internal std::mutex (mutex_),
//     which is only ever held for a few instructions, never while waiting
//     (condition_variable::wait releases it).
//   - unlock() wakes ALL waiters: with wait-die each waiter must re-check its
//     own "should I back off?" against whoever holds the lock now, so waking
//     only one could leave a waiter asleep behind an older holder.
//   - notify is done under mutex_: a woken waiter may take the lock, unlock
//     it and destroy the ww_mutex, so the notifier must not touch cv_ after
//     releasing mutex_.
//   - Cancellation: a cancel_token::scoped_waker takes mutex_ and notifies.
//     The token runs wakers under its own mutex and the scoped_waker's
//     destructor takes that mutex, so once it returns no waker touches this
//     ww_mutex. Lock order is therefore
//     cancel token mutex -> ww_mutex::mutex_; a waiter registers and
//     unregisters only while NOT holding mutex_.
#include "core/ww_mutex.hpp"

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstdio>
#include <functional>
#include <new>
#include <string>

namespace xbuf {

namespace {

// Stamps start at 1 so that 0 can mean "no context" in holder_stamp_.
std::atomic<std::uint64_t> next_stamp{1};

// "ww_mutex@0x5581..." - a lock has no name of its own; its address is what
// a debugger and the owner's logs can match.
std::string describe(const ww_mutex* m) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "ww_mutex@%p", static_cast<const void*>(m));
  return buf;
}

bool is_cancelled(const cancel_token* cancel) noexcept {
  return cancel != nullptr && cancel->cancelled();
}

error out_of_memory_error(const ww_mutex* m) {
  return fail(errc::out_of_memory, describe(m) + ": acquire context could not record the lock");
}

}  // namespace

// ------------------------------------------------------------ ww_acquire_ctx

ww_acquire_ctx::ww_acquire_ctx() : stamp_(next_stamp.fetch_add(1, std::memory_order_relaxed)) {
  // Most contexts lock a handful of buffers; reserving here keeps lock()
  // from allocating in the common case.
  held_.reserve(8);
}

ww_acquire_ctx::~ww_acquire_ctx() {
  assert(held_.empty() && "ww_acquire_ctx destroyed with locks held: call unlock_all() first");
  // Release builds: the locks would point at a dead context; releasing them
  // is the only recovery that leaves no dangling holder behind.
  unlock_all();
}

// Locks taken through a context are invisible to -Wthread-safety (they can
// fail with would_deadlock), so neither is releasing them.
void ww_acquire_ctx::unlock_all() noexcept XBUF_NO_THREAD_SAFETY_ANALYSIS {
  // unlock() removes the lock from held_ through forget().
  // contending_ survives on purpose: the back-off dance reads it next.
  while (!held_.empty()) held_.back()->unlock();
}

void ww_acquire_ctx::forget(const ww_mutex* m) noexcept {
  // Search from the back: locks are usually released newest first.
  auto it = std::find(held_.rbegin(), held_.rend(), m);
  assert(it != held_.rend());
  if (it != held_.rend()) held_.erase(std::next(it).base());
}

// ------------------------------------------------------------------ ww_mutex

ww_mutex::~ww_mutex() {
  assert(!locked_ && "ww_mutex destroyed while locked");
}

status ww_mutex::lock(ww_acquire_ctx& ctx, const cancel_token* cancel) {
  return acquire(&ctx, cancel, acquire_mode::normal);
}

status ww_mutex::lock_slow(ww_acquire_ctx& ctx, const cancel_token* cancel) {
  return acquire(&ctx, cancel, acquire_mode::slow);
}

// The capability is implemented here, below the analysis.
void ww_mutex::lock() XBUF_NO_THREAD_SAFETY_ANALYSIS {
  // Without a context and a token the only outcome is success.
  status s = acquire(nullptr, nullptr, acquire_mode::plain);
  assert(s.has_value());
  (void)s;
}

status ww_mutex::lock(const cancel_token* cancel) {
  return acquire(nullptr, cancel, acquire_mode::plain);
}

bool ww_mutex::trylock() noexcept XBUF_NO_THREAD_SAFETY_ANALYSIS {
  mutex_lock guard(mutex_);
  if (locked_) return false;
  take_locked(nullptr);
  return true;
}

status ww_mutex::trylock(ww_acquire_ctx& ctx) {
  assert(!ctx.done_ && "trylock after ww_acquire_ctx::done()");
  try {
    ctx.held_.reserve(ctx.held_.size() + 1);
  } catch (const std::bad_alloc&) {
    return out_of_memory_error(this);
  }
  mutex_lock guard(mutex_);
  if (locked_ && holder_ == &ctx) {
    return fail(errc::already_exists, describe(this) + ": already held by this acquire context");
  }
  if (locked_) return fail(errc::busy, describe(this) + ": locked by someone else");
  take_locked(&ctx);
  return ok();
}

void ww_mutex::unlock() noexcept XBUF_NO_THREAD_SAFETY_ANALYSIS {
  mutex_lock guard(mutex_);
  assert(locked_ && "unlock of a ww_mutex that is not locked");
  assert(owner_thread_ == std::this_thread::get_id() && "ww_mutex unlocked by a thread that does not hold it");
  if (!locked_) return;  // release build: a stray unlock changes nothing
  // The context belongs to the unlocking thread, so touching it here is safe.
  if (holder_ != nullptr) holder_->forget(this);
  locked_ = false;
  holder_ = nullptr;
  holder_stamp_ = 0;
  owner_thread_ = std::thread::id();
  cv_.notify_all();  // under mutex_: see the file comment
}

bool ww_mutex::is_locked() const noexcept {
  mutex_lock guard(mutex_);
  return locked_;
}

bool ww_mutex::held_by(const ww_acquire_ctx& ctx) const noexcept {
  mutex_lock guard(mutex_);
  return locked_ && holder_ == &ctx;
}

bool ww_mutex::held_by_this_thread() const noexcept {
  mutex_lock guard(mutex_);
  return locked_ && owner_thread_ == std::this_thread::get_id();
}

void ww_mutex::assert_held() const noexcept {
#ifndef NDEBUG
  assert(held_by_this_thread() && "ww_mutex must be held by the calling thread");
#endif
}

void ww_mutex::take_locked(ww_acquire_ctx* ctx) noexcept {
  locked_ = true;
  holder_ = ctx;
  holder_stamp_ = ctx != nullptr ? ctx->stamp_ : 0;
  owner_thread_ = std::this_thread::get_id();
  if (ctx != nullptr) {
    ctx->held_.push_back(this);  // capacity reserved by the caller: cannot throw
    if (ctx->contending_ == this) ctx->contending_ = nullptr;
  }
}

bool ww_mutex::must_back_off_locked(const ww_acquire_ctx& ctx) const noexcept {
  // Wait-die: only a context that holds something can close a cycle, and it
  // dies only before an OLDER holder. A context-free holder holds no other
  // ww_mutex (a rule), so waiting for it is always safe.
  return holder_ != nullptr && !ctx.held_.empty() && holder_stamp_ < ctx.stamp_;
}

status ww_mutex::acquire(ww_acquire_ctx* ctx, const cancel_token* cancel,
                         [[maybe_unused]] acquire_mode mode) {  // mode: only checked in debug builds
  if (ctx != nullptr) {
    assert(!ctx->done_ && "lock after ww_acquire_ctx::done()");
    assert((mode != acquire_mode::slow || ctx->held_.empty()) &&
           "lock_slow with locks held: call unlock_all() after would_deadlock");
    assert((ctx->contending_ == nullptr || (ctx->contending_ == this && ctx->held_.empty())) &&
           "after would_deadlock: unlock_all(), then lock_slow() the contended lock first");
    try {
      ctx->held_.reserve(ctx->held_.size() + 1);
    } catch (const std::bad_alloc&) {
      return out_of_memory_error(this);
    }
  }

  // Called with mutex_ held; the stamp is passed in because a lambda body is
  // outside -Wthread-safety's view of the caller's lock.
  auto back_off = [&](std::uint64_t holder_stamp) -> status {
    ctx->contending_ = this;
    ctx->backoffs_.fetch_add(1, std::memory_order_relaxed);
    return fail(errc::would_deadlock,
                describe(this) + ": held by an older acquire context (stamp " +
                    std::to_string(holder_stamp) + " < " + std::to_string(ctx->stamp_) +
                    "); drop all locks and lock_slow() this one");
  };
  auto cancelled = [&]() -> status {
    return fail(errc::cancelled, describe(this) + ": lock wait cancelled");
  };

  // Fast path: no waker registration when the lock is free.
  {
    mutex_lock guard(mutex_);
    if (locked_ && ctx != nullptr && holder_ == ctx) {
      return fail(errc::already_exists, describe(this) + ": already held by this acquire context");
    }
    if (!locked_) {
      take_locked(ctx);
      return ok();
    }
    if (ctx != nullptr && must_back_off_locked(*ctx)) return back_off(holder_stamp_);
    if (is_cancelled(cancel)) return cancelled();
    assert(owner_thread_ != std::this_thread::get_id() &&
           "ww_mutex: the calling thread already holds it (self-deadlock)");
  }

  // Slow path. The registration is made and removed without mutex_ held
  // (lock order: token mutex -> mutex_), so `guard` lives in an inner scope.
  status outcome;
  cancel_token::scoped_waker registration(cancel, [this] {
    mutex_lock guard(mutex_);
    cv_.notify_all();
  });
  {
    mutex_lock guard(mutex_);
    for (;;) {
      if (!locked_) {
        take_locked(ctx);
        break;
      }
      // Re-checked after every wake-up: the holder may have changed.
      if (ctx != nullptr && must_back_off_locked(*ctx)) {
        outcome = back_off(holder_stamp_);
        break;
      }
      if (is_cancelled(cancel)) {
        outcome = cancelled();
        break;
      }
      guard.wait(cv_);
    }
  }
  return outcome;
}

// ------------------------------------------------------------------ lock_all

status lock_all(ww_acquire_ctx& ctx, std::span<ww_mutex* const> locks, const cancel_token* cancel) {
  if (ctx.held_count() != 0) {
    return fail(errc::bad_state, "lock_all: acquire context (stamp " + std::to_string(ctx.stamp()) +
                                     ") already holds " + std::to_string(ctx.held_count()) +
                                     " locks; a back-off would drop them behind the caller's back");
  }
  for (std::size_t i = 0; i < locks.size(); ++i) {
    if (locks[i] == nullptr) {
      return fail(errc::invalid_argument, "lock_all: entry " + std::to_string(i) + " is null");
    }
  }

  for (;;) {
    // After a back-off, wait for the lock we lost on first, holding nothing.
    if (ww_mutex* first = ctx.contended(); first != nullptr) {
      if (status s = first->lock_slow(ctx, cancel); !s) {
        ctx.unlock_all();
        return s;
      }
    }
    bool backed_off = false;
    for (ww_mutex* m : locks) {
      status s = m->lock(ctx, cancel);
      if (s || s.code() == errc::already_exists) continue;  // duplicates, or the slow-locked one
      ctx.unlock_all();
      if (s.code() != errc::would_deadlock) return s;
      backed_off = true;
      break;
    }
    if (!backed_off) return ok();
  }
}

}  // namespace xbuf
