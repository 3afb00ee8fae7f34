// SPDX-License-Identifier: MIT
//
// event_poller.hpp - one thread that turns completed GPU events into signaled fences.
//
// Overview
//   Runtime events cannot call us back safely: a CUDA host function
//   (cuLaunchHostFunc) must not call CUDA, yet fence callbacks may do anything
//   a fence callback is allowed to, including enqueueing the next copy. So
//   the backends poll instead: every fence someone waits on is watched here
//   and signaled from this thread, with no xbuf lock held, as soon as its
//   event reports completion.
//
//   Polling interval adapts: 20 us right after a completion (copies tend to
//   complete in bursts), doubling to 1 ms while nothing completes; the thread
//   sleeps without timeout when it watches nothing.
//
// Rules
//   - watch() never blocks on the GPU and may be called from any thread,
//     including a fence callback.
//   - The poller holds the fences it watches (fence_ptr) until they signal.
//   - Destroying the poller stops the thread; fences still watched stay
//     unsignaled but keep polling in is_signaled()/wait(), so the owner must
//     make sure their events complete (a backend synchronizes its streams).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "core/fence.hpp"
#include "core/mutex.hpp"

namespace xbuf::gpu {

class event_poller {
 public:
  // name: for the thread name and stats ("cuda-poller").
  explicit event_poller(std::string name);
  ~event_poller();
  event_poller(const event_poller&) = delete;
  event_poller& operator=(const event_poller&) = delete;

  // Watches `f` until it signals. Context: may allocate; never blocks for long.
  void watch(fence_ptr f);

  // Fences watched right now (for tests and stats).
  std::size_t watched() const;
  // Fences this poller has seen signal so far.
  std::uint64_t completed() const noexcept;

 private:
  void run() XBUF_EXCLUDES(mutex_);
  // Sleeps until watch() or the destructor wakes the thread, at most
  // `interval` when fences are being polled (polling = true).
  void sleep_locked(mutex_lock& lock, bool polling, std::chrono::microseconds interval) XBUF_REQUIRES(mutex_);

  const std::string name_;
  mutable xbuf::mutex mutex_;  // leaf
  std::condition_variable wake_;
  std::vector<fence_ptr> incoming_ XBUF_GUARDED_BY(mutex_);  // handed over by watch()
  std::size_t polling_ XBUF_GUARDED_BY(mutex_) = 0;          // fences the thread holds
  bool stop_ XBUF_GUARDED_BY(mutex_) = false;
  std::uint64_t completed_ XBUF_GUARDED_BY(mutex_) = 0;
  std::thread thread_;
};

}  // namespace xbuf::gpu
