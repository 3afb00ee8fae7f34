// SPDX-License-Identifier: MIT
//
// Implementation notes
//   when_all_signaled() counts the fences down; its function only moves the
//   job from `waiting` to `ready`. `claimed` makes "run" and "cancel"
//   mutually exclusive, so start runs once even when shutdown races the last
//   fence. The fence callbacks hold the shared state weakly, not the
//   submitter, so a fence that signals after the submitter was destroyed
//   finds it gone and does nothing.
#include "backends/gpu/deferred_submitter.hpp"

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "core/fence_join.hpp"
#include "core/mutex.hpp"

namespace xbuf::gpu {

struct deferred_submitter::job {
  start_fn start;
  std::atomic<bool> claimed{false};
  int upstream_error = 0;  // written before the job is queued, read after
  std::uint64_t id = 0;

  // Runs start unless the other side (run or cancel) already did.
  void claim_and_start(int error) {
    if (!claimed.exchange(true, std::memory_order_acq_rel)) start(error);
  }
};

struct deferred_submitter::shared_state {
  mutable xbuf::mutex mutex;  // leaf
  std::condition_variable wake;
  std::deque<std::shared_ptr<job>> ready XBUF_GUARDED_BY(mutex);
  std::unordered_map<std::uint64_t, std::shared_ptr<job>> waiting XBUF_GUARDED_BY(mutex);
  std::uint64_t next_id XBUF_GUARDED_BY(mutex) = 1;
  bool closed XBUF_GUARDED_BY(mutex) = false;

  // Called once the job's fences have all signaled.
  void make_ready(const std::shared_ptr<job>& j, int error) XBUF_EXCLUDES(mutex) {
    {
      mutex_lock lock(mutex);
      // Not waiting any more: the destructor took it and cancels it.
      if (waiting.erase(j->id) == 0 || closed) return;
      j->upstream_error = error;
      ready.push_back(j);
    }
    wake.notify_one();
  }
};

deferred_submitter::deferred_submitter(std::string name)
    : state_(std::make_shared<shared_state>()) {
  thread_ = std::thread([this] { run(); });
  (void)pthread_setname_np(thread_.native_handle(), name.substr(0, 15).c_str());
}

deferred_submitter::~deferred_submitter() {
  std::vector<std::shared_ptr<job>> cancelled;
  {
    mutex_lock lock(state_->mutex);
    state_->closed = true;
    for (auto& [id, j] : state_->waiting) cancelled.push_back(j);
    state_->waiting.clear();
  }
  state_->wake.notify_all();
  thread_.join();  // runs what was ready before we closed
  for (auto& j : cancelled) j->claim_and_start(-ECANCELED);
}

void deferred_submitter::submit_after(std::span<const fence_ptr> fences, start_fn start) {
  auto j = std::make_shared<job>();
  j->start = std::move(start);
  bool closed = false;
  {
    mutex_lock lock(state_->mutex);
    j->id = state_->next_id++;
    closed = state_->closed;
    if (!closed) state_->waiting.emplace(j->id, j);
  }
  if (closed) {
    j->claim_and_start(-ECANCELED);
    return;
  }
  std::weak_ptr<shared_state> weak = state_;
  when_all_signaled(std::vector<fence_ptr>(fences.begin(), fences.end()), [weak, j](int first_error) {
    if (auto s = weak.lock()) s->make_ready(j, first_error);
  });
}

std::size_t deferred_submitter::pending() const {
  mutex_lock lock(state_->mutex);
  return state_->ready.size() + state_->waiting.size();
}

void deferred_submitter::run() {
  auto& s = *state_;
  mutex_lock lock(s.mutex);
  for (;;) {
    while (!s.closed && s.ready.empty()) lock.wait(s.wake);
    if (s.ready.empty()) break;  // closed and drained
    auto j = std::move(s.ready.front());
    s.ready.pop_front();
    const int error = j->upstream_error;
    lock.unlock();
    j->claim_and_start(error);
    lock.lock();
  }
}

}  // namespace xbuf::gpu
