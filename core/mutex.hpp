// SPDX-License-Identifier: MIT
//
// mutex.hpp - the mutex every xbuf lock uses, annotated for -Wthread-safety.
//
// Overview
//   xbuf::mutex is std::mutex with capability attributes, and mutex_lock is
//   its scoped lock (a std::unique_lock underneath, so it can be dropped and
//   retaken around a wait, and condition variables work with it). libstdc++'s
//   own types carry no attributes, so the analysis can check only locks
//   taken through these two.
//
// Rules
//   - Naming: a helper whose name ends in `_locked` requires the mutex of
//     the object it belongs to (the manager's mutex_, a heap's owner's lock);
//     one that needs a buffer's reservation lock ends in `_resv_locked` and
//     checks it with reservation::assert_held(). The annotations say the same
//     to the compiler.
//   - Waiting on a condition variable keeps the capability from the
//     analysis' point of view (the lock is held again when wait returns).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "core/thread_annotations.hpp"

namespace xbuf {

class XBUF_CAPABILITY("mutex") mutex {
 public:
  mutex() = default;
  mutex(const mutex&) = delete;
  mutex& operator=(const mutex&) = delete;

  void lock() XBUF_ACQUIRE() { m_.lock(); }
  void unlock() XBUF_RELEASE() { m_.unlock(); }
  bool try_lock() XBUF_TRY_ACQUIRE(true) { return m_.try_lock(); }

  // Tells the analysis the caller holds this mutex (a run-time no-op): for
  // code it cannot follow, such as a callback run under the lock.
  void assert_held() const XBUF_ASSERT_CAPABILITY(this) {}

 private:
  friend class mutex_lock;
  std::mutex m_;
};

// Holds a mutex for a scope; unlock()/lock() drop and retake it inside it.
class XBUF_SCOPED_CAPABILITY mutex_lock {
 public:
  explicit mutex_lock(mutex& m) XBUF_ACQUIRE(m) : lock_(m.m_) {}
  ~mutex_lock() XBUF_RELEASE() {}
  mutex_lock(const mutex_lock&) = delete;
  mutex_lock& operator=(const mutex_lock&) = delete;

  void lock() XBUF_ACQUIRE() { lock_.lock(); }
  void unlock() XBUF_RELEASE() { lock_.unlock(); }

  // Condition-variable waits: the mutex is released while blocked and held
  // again on return, as std::condition_variable does with a unique_lock.
  void wait(std::condition_variable& cv) { cv.wait(lock_); }
  template <class Clock, class Duration>
  std::cv_status wait_until(std::condition_variable& cv,
                            const std::chrono::time_point<Clock, Duration>& deadline) {
    return cv.wait_until(lock_, deadline);
  }
  template <class Rep, class Period>
  std::cv_status wait_for(std::condition_variable& cv,
                          const std::chrono::duration<Rep, Period>& timeout) {
    return cv.wait_for(lock_, timeout);
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace xbuf
