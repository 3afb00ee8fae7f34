// SPDX-License-Identifier: MIT
#include "backends/gpu/event_poller.hpp"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <iterator>

namespace xbuf::gpu {

namespace {
constexpr std::chrono::microseconds min_interval{20};
constexpr std::chrono::microseconds max_interval{1000};
}  // namespace

event_poller::event_poller(std::string name) : name_(std::move(name)) {
  thread_ = std::thread([this] { run(); });
  // Thread names are capped at 15 characters; a failure only loses the name.
  (void)pthread_setname_np(thread_.native_handle(), name_.substr(0, 15).c_str());
}

event_poller::~event_poller() {
  {
    mutex_lock lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void event_poller::watch(fence_ptr f) {
  if (!f) return;
  {
    mutex_lock lock(mutex_);
    if (stop_) return;
    incoming_.push_back(std::move(f));
  }
  wake_.notify_one();
}

std::size_t event_poller::watched() const {
  mutex_lock lock(mutex_);
  return incoming_.size() + polling_;
}

std::uint64_t event_poller::completed() const noexcept {
  mutex_lock lock(mutex_);
  return completed_;
}

void event_poller::sleep_locked(mutex_lock& lock, bool polling, std::chrono::microseconds interval) {
  if (!polling) {
    while (!stop_ && incoming_.empty()) lock.wait(wake_);
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + interval;
  while (!stop_ && incoming_.empty()) {
    if (lock.wait_until(wake_, deadline) == std::cv_status::timeout) return;
  }
}

void event_poller::run() {
  std::vector<fence_ptr> polling;
  auto interval = min_interval;
  mutex_lock lock(mutex_);
  while (!stop_) {
    if (polling.empty() && incoming_.empty()) {
      sleep_locked(lock, false, interval);
      continue;
    }
    std::move(incoming_.begin(), incoming_.end(), std::back_inserter(polling));
    incoming_.clear();
    polling_ = polling.size();
    lock.unlock();

    // is_signaled() runs do_poll() and, on completion, signal() with the
    // fence callbacks - all outside our lock, as fence.hpp requires.
    const auto before = polling.size();
    std::erase_if(polling, [](const fence_ptr& f) { return f->is_signaled(); });
    const auto done = before - polling.size();

    lock.lock();
    completed_ += done;
    polling_ = polling.size();
    interval = done > 0 ? min_interval : std::min(interval * 2, max_interval);
    if (!polling.empty()) sleep_locked(lock, true, interval);
  }
  polling_ = 0;
  // Dropping the remaining references outside the lock: a fence destructor
  // destroys its runtime event and must not run under our mutex.
  lock.unlock();
  polling.clear();
}

}  // namespace xbuf::gpu
