// SPDX-License-Identifier: MIT
//
// deadline_watchdog.hpp - forcing fences that depend on a client.
//
// Overview
//   A fence that a client promised to signal ("I am using this buffer") must
//   not stall eviction forever. The watchdog signals it with -ETIMEDOUT when
//   its deadline passes, and reports it so the daemon can name the client.
//   It is a policy of the memory manager, not part of the fence contract.
//
// Rules
//   - Signals outside its own lock: the fence's callbacks may call watch().
//   - on_expire runs on the watchdog's thread and follows the fence-callback
//     rules (no reservation locks, no manager mutex).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

// Signals fences whose deadline passed with -ETIMEDOUT, then tells the owner
// (the daemon logs the client). One thread; fences that signal in time are
// dropped from its list without waking it.
class deadline_watchdog {
 public:
  using expired_fn = std::function<void(const fence_ptr&)>;

  explicit deadline_watchdog(expired_fn on_expire = {});
  ~deadline_watchdog();  // stops the thread; watched fences are left as they are
  deadline_watchdog(const deadline_watchdog&) = delete;
  deadline_watchdog& operator=(const deadline_watchdog&) = delete;

  // Watches `f` until `deadline`. A fence already signaled is ignored.
  void watch(fence_ptr f, fence_clock::time_point deadline);

  // Fences still watched (unsignaled, deadline not reached).
  std::size_t pending() const;
  // Fences this watchdog has signaled with -ETIMEDOUT so far.
  std::uint64_t expired_count() const noexcept { return expired_.load(); }

 private:
  struct entry {
    fence_clock::time_point deadline;
    fence_ptr f;
  };
  static bool later(const entry& a, const entry& b);
  void run();
  expired_fn on_expire_;
  mutable mutex mutex_;
  std::condition_variable wake_;
  std::vector<entry> entries_ XBUF_GUARDED_BY(mutex_);  // min-heap on deadline
  std::size_t swept_size_ XBUF_GUARDED_BY(mutex_) = 0;  // size after the last sweep
  bool stop_ XBUF_GUARDED_BY(mutex_) = false;
  std::atomic<std::uint64_t> expired_{0};
  std::thread thread_;
};

}  // namespace xbuf
