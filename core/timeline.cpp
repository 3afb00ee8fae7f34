// SPDX-License-Identifier: MIT
#include "core/timeline.hpp"

namespace xbuf {

timeline::timeline(std::string name) : context_(fence::allocate_context()), name_(std::move(name)) {}

std::shared_ptr<timeline> timeline::create(std::string name) {
  return std::shared_ptr<timeline>(new timeline(std::move(name)));
}

fence_ptr timeline::next_fence() {
  mutex_lock lock(mutex_);
  auto f = fence_ptr(new fence(context_, ++last_seqno_));
  f->timeline_ = shared_from_this();
  // Drop entries at the front that are gone or done, so the list stays as
  // long as the work actually in flight.
  while (!pending_.empty()) {
    auto front = pending_.front().lock();
    if (front && !front->signaled_.load(std::memory_order_acquire)) break;
    pending_.pop_front();
  }
  pending_.push_back(f);
  return f;
}

std::uint64_t timeline::last_seqno() const noexcept {
  mutex_lock lock(mutex_);
  return last_seqno_;
}

std::vector<fence_ptr> timeline::collect_pending(std::uint64_t max_seqno) {
  std::vector<fence_ptr> todo;
  mutex_lock lock(mutex_);
  for (auto& w : pending_) {
    auto f = w.lock();
    if (!f) continue;
    if (f->seqno() > max_seqno) break;  // pending_ is in seqno order
    if (!f->signaled_.load(std::memory_order_acquire)) todo.push_back(std::move(f));
  }
  return todo;
}

void timeline::signal_predecessors(std::uint64_t seqno) noexcept {
  if (seqno <= 1) return;
  // Signaled outside mutex_: callbacks may create fences on this timeline.
  for (auto& f : collect_pending(seqno - 1)) (void)f->signal_one(0);
}

void timeline::signal_through(std::uint64_t seqno, int error) noexcept {
  for (auto& f : collect_pending(seqno)) (void)f->signal_one(error);
}

}  // namespace xbuf
