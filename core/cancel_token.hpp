// SPDX-License-Identifier: MIT
//
// cancel_token.hpp - cancelling waits (the user-space -ERESTARTSYS).
//
// Overview
//   A wait that takes a cancel_token returns errc::cancelled once the token
//   is cancelled, distinct from a timeout. The daemon gives each session one
//   token and cancels it when the client hangs up or the daemon stops.
//
// Rules
//   - Sticky: once cancelled, every current and later wait returns cancelled.
//   - Lock order: the token mutex is taken before a waiter's own mutex (a
//     leaf); wakers must not call back into the token.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <utility>
#include <vector>

#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

// Cancels waits, as a signal interrupts a kernel wait with -ERESTARTSYS.
// Sticky: once cancelled, every current and later wait using it returns
// errc::cancelled. Thread-safe; must outlive the waits that use it.
class cancel_token {
 public:
  cancel_token() = default;
  cancel_token(const cancel_token&) = delete;
  cancel_token& operator=(const cancel_token&) = delete;

  // Context: never blocks for long; may be called from any thread or a fence callback.
  void cancel();
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

  // Wakes a waiter when the token is cancelled, for the scope of one wait:
  // `wake` is called at most once, from cancel(), if that happens while the
  // scoped_waker lives (not if the token was already cancelled - check
  // cancelled() after constructing it). The destructor returns only once a
  // running `wake` has finished, so `wake` may touch the waiter's stack.
  // Lock order: cancel() runs `wake` under the token's mutex, so `wake` may
  // take a leaf lock but must not cancel, register or unregister.
  // A null token makes this a no-op.
  class scoped_waker {
   public:
    scoped_waker(const cancel_token* token, std::function<void()> wake);
    ~scoped_waker();
    scoped_waker(const scoped_waker&) = delete;
    scoped_waker& operator=(const scoped_waker&) = delete;

   private:
    cancel_token* token_ = nullptr;  // null when not registered
    std::uint64_t id_ = 0;
  };

 private:
  std::atomic<bool> cancelled_{false};
  mutex mutex_;
  std::uint64_t next_waker_ XBUF_GUARDED_BY(mutex_) = 1;
  std::vector<std::pair<std::uint64_t, std::function<void()>>> wakers_ XBUF_GUARDED_BY(mutex_);
};

}  // namespace xbuf
