// SPDX-License-Identifier: MIT
#include "allocator/deadline_watchdog.hpp"

#include <algorithm>
#include <cerrno>

namespace xbuf {

// Heap order: the earliest deadline on top.
bool deadline_watchdog::later(const entry& a, const entry& b) { return a.deadline > b.deadline; }

deadline_watchdog::deadline_watchdog(expired_fn on_expire)
    : on_expire_(std::move(on_expire)), thread_([this] { run(); }) {}

deadline_watchdog::~deadline_watchdog() {
  {
    mutex_lock lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void deadline_watchdog::watch(fence_ptr f, fence_clock::time_point deadline) {
  if (!f || f->is_signaled()) return;
  bool earliest = false;
  {
    mutex_lock lock(mutex_);
    // Fences that signaled in time stay in the heap until their deadline;
    // sweep them when the heap has doubled so it tracks the live set.
    if (entries_.size() >= 2 * swept_size_ + 64) {
      std::erase_if(entries_, [](const entry& e) { return e.f->is_signaled(); });
      std::make_heap(entries_.begin(), entries_.end(), later);
      swept_size_ = entries_.size();
    }
    earliest = entries_.empty() || deadline < entries_.front().deadline;
    entries_.push_back({deadline, std::move(f)});
    std::push_heap(entries_.begin(), entries_.end(), later);
  }
  if (earliest) wake_.notify_all();
}

std::size_t deadline_watchdog::pending() const {
  mutex_lock lock(mutex_);
  return static_cast<std::size_t>(std::count_if(entries_.begin(), entries_.end(),
                                                [](const entry& e) { return !e.f->is_signaled(); }));
}

void deadline_watchdog::run() {
  mutex_lock lock(mutex_);
  while (!stop_) {
    if (entries_.empty()) {
      lock.wait(wake_);
      continue;
    }
    const auto next = entries_.front().deadline;
    if (fence_clock::now() < next) {
      lock.wait_until(wake_, next);
      continue;
    }
    std::vector<fence_ptr> expired;
    while (!entries_.empty() && entries_.front().deadline <= fence_clock::now()) {
      std::pop_heap(entries_.begin(), entries_.end(), later);
      expired.push_back(std::move(entries_.back().f));
      entries_.pop_back();
    }
    // Signal outside the lock: callbacks may call watch() again.
    lock.unlock();
    for (auto& f : expired) {
      if (f->signal(-ETIMEDOUT)) {
        expired_.fetch_add(1, std::memory_order_relaxed);
        if (on_expire_) on_expire_(f);
      }
    }
    lock.lock();
  }
}

}  // namespace xbuf
