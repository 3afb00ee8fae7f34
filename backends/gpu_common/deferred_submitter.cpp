// SPDX-License-Identifier: MIT
//
// Implementation notes
//   A job's countdown starts at fences + 1: the extra count belongs to
//   submit_after() itself, so a fence that signals while callbacks are still
//   being added cannot release the job early. Whoever brings the count to
//   zero makes the job ready. `claimed` makes "run" and "cancel" mutually
//   exclusive, so start runs once even when shutdown races the last callback.
//   The callbacks hold the shared state, not the submitter, so a fence that
//   signals after the submitter was destroyed finds a closed queue.
#include "backends/gpu_common/deferred_submitter.hpp"

#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <vector>

namespace xbuf::gpu {

struct deferred_submitter::job {
  start_fn start;
  std::atomic<std::size_t> remaining{0};
  std::atomic<int> first_error{0};
  std::atomic<bool> claimed{false};
  std::uint64_t id = 0;

  void note_error(int e) {
    if (e == 0) return;
    int expected = 0;
    first_error.compare_exchange_strong(expected, e, std::memory_order_acq_rel);
  }
};

struct deferred_submitter::shared_state {
  mutable std::mutex mutex;  // leaf
  std::condition_variable wake;
  std::deque<std::shared_ptr<job>> ready;                       // guarded by mutex
  std::unordered_map<std::uint64_t, std::shared_ptr<job>> waiting;  // guarded by mutex
  std::uint64_t next_id = 1;                                    // guarded by mutex
  bool closed = false;                                          // guarded by mutex

  // Called when a job's countdown reached zero.
  void make_ready(const std::shared_ptr<job>& j) {
    {
      std::lock_guard lock(mutex);
      waiting.erase(j->id);
      if (closed) return;  // the destructor cancels or already ran it
      ready.push_back(j);
    }
    wake.notify_one();
  }

  void count_down(const std::shared_ptr<job>& j) {
    if (j->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) make_ready(j);
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
    std::lock_guard lock(state_->mutex);
    state_->closed = true;
    for (auto& [id, j] : state_->waiting) cancelled.push_back(j);
    state_->waiting.clear();
  }
  state_->wake.notify_all();
  thread_.join();  // runs what was ready before we closed
  for (auto& j : cancelled) {
    if (!j->claimed.exchange(true)) j->start(-ECANCELED);
  }
}

void deferred_submitter::submit_after(std::span<const fence_ptr> fences, start_fn start) {
  auto j = std::make_shared<job>();
  j->start = std::move(start);
  std::size_t count = 0;
  for (const auto& f : fences) count += f ? 1 : 0;
  j->remaining.store(count + 1, std::memory_order_relaxed);
  {
    std::lock_guard lock(state_->mutex);
    j->id = state_->next_id++;
    if (state_->closed) {
      j->claimed = true;
    } else {
      state_->waiting.emplace(j->id, j);
    }
  }
  if (j->claimed) {
    j->start(-ECANCELED);
    return;
  }

  std::weak_ptr<shared_state> weak = state_;
  for (const auto& f : fences) {
    if (!f) continue;
    auto added = f->add_callback([weak, j](const fence& done) {
      j->note_error(done.error());
      if (auto s = weak.lock()) {
        s->count_down(j);
      }
    });
    if (!added) {  // already signaled: count it ourselves
      j->note_error(f->error());
      state_->count_down(j);
    }
  }
  state_->count_down(j);  // submit_after's own count
}

std::size_t deferred_submitter::pending() const {
  std::lock_guard lock(state_->mutex);
  return state_->ready.size() + state_->waiting.size();
}

void deferred_submitter::run() {
  auto& s = *state_;
  std::unique_lock lock(s.mutex);
  for (;;) {
    s.wake.wait(lock, [&] { return s.closed || !s.ready.empty(); });
    if (s.ready.empty()) break;  // closed and drained
    auto j = std::move(s.ready.front());
    s.ready.pop_front();
    lock.unlock();
    if (!j->claimed.exchange(true)) j->start(j->first_error.load(std::memory_order_acquire));
    lock.lock();
  }
}

}  // namespace xbuf::gpu
