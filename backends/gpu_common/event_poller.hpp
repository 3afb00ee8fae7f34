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
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/fence.hpp"

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
  void run();

  const std::string name_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<fence_ptr> incoming_;  // guarded by mutex_: handed over by watch()
  std::size_t polling_ = 0;          // guarded by mutex_: fences the thread holds
  bool stop_ = false;                // guarded by mutex_
  std::uint64_t completed_ = 0;      // guarded by mutex_
  std::thread thread_;
};

}  // namespace xbuf::gpu
