// SPDX-License-Identifier: MIT
//
// fence.cpp - fences and waits on them.
//
// Implementation notes
//   - Callbacks are moved out of the fence one at a time and run without the
//     fence lock, so a callback may query the fence and signal other fences.
//     running_callback_ lets remove_callback() wait for a callback that is
//     running on another thread: after it returns, the caller may free what
//     the callback touches (the waiters below rely on this: their state lives
//     on the waiting thread's stack).
//   - A waiter is a mutex + condition variable on the waiting thread's stack.
//     It is woken by a fence callback and by the cancel token; both are
//     removed before the waiter goes out of scope, and both notify while
//     holding the waiter's mutex, so the waiter never sees a notify after it
//     returned.
#include "core/fence.hpp"

#include <algorithm>
#include <cerrno>

#include "core/futex.hpp"
#include "core/timeline.hpp"

namespace xbuf {

namespace {

std::atomic<std::uint64_t> next_context{1};

// One waiting thread: woken by any fence callback or by cancellation.
struct waiter {
  xbuf::mutex mutex;
  std::condition_variable cv;
  bool woken XBUF_GUARDED_BY(mutex) = false;

  void wake() {
    mutex_lock lock(mutex);
    woken = true;
    cv.notify_all();  // under the lock: the waiter cannot have returned yet
  }
};

bool is_cancelled(const cancel_token* cancel) { return cancel != nullptr && cancel->cancelled(); }

status timed_out_error(fence_clock::time_point deadline) {
  (void)deadline;
  return fail(errc::timed_out, "wait timed out before the fence signaled");
}
status cancelled_error() { return fail(errc::cancelled, "wait cancelled"); }

}  // namespace


fence::fence(std::uint64_t context, std::uint64_t seqno) : context_(context), seqno_(seqno) {}

fence::~fence() {
  // The last reference to an unsignaled fence is gone, so nobody can signal
  // it any more: tell whoever registered a callback instead of leaving them
  // waiting forever. (A waiter holds a reference, so this only reaches
  // fire-and-forget callbacks.)
  if (!signaled_.load(std::memory_order_acquire)) {
    bool has_callbacks = false;
    {
      mutex_lock lock(mutex_);
      has_callbacks = !callbacks_.empty();
    }
    if (has_callbacks) (void)signal_one(-ECANCELED);
  }
}

fence_ptr fence::create(std::uint64_t context, std::uint64_t seqno) {
  return fence_ptr(new fence(context, seqno));
}

fence_ptr fence::signaled(int error) {
  static const std::uint64_t stub_context = allocate_context();
  auto f = create(stub_context, 0);
  (void)f->signal(error);
  return f;
}

std::uint64_t fence::allocate_context() noexcept {
  return next_context.fetch_add(1, std::memory_order_relaxed);
}

status fence::signal(int error) noexcept {
  if (timeline_) timeline_->signal_predecessors(seqno_);
  return signal_one(error);
}

status fence::signal_one(int error) noexcept {
  {
    mutex_lock lock(mutex_);
    if (signaled_.load(std::memory_order_relaxed)) {
      return fail(errc::already_signaled, describe_locked_free());
    }
    error_ = error;
    stamp_ = fence_clock::now();
    signaled_.store(true, std::memory_order_release);
    running_thread_ = std::this_thread::get_id();
  }
  // Run callbacks one by one, each outside the lock, in the order added.
  for (;;) {
    callback_entry entry;
    {
      mutex_lock lock(mutex_);
      if (callbacks_.empty()) {
        running_callback_ = 0;
        break;
      }
      entry = std::move(callbacks_.front());
      callbacks_.pop_front();
      running_callback_ = entry.id;
    }
    entry.fn(*this);
    {
      mutex_lock lock(mutex_);
      running_callback_ = 0;
    }
    callbacks_done_.notify_all();
  }
  callbacks_done_.notify_all();
  // Sleeping waiters last, as the kernel's default wait is the last of a
  // fence's callbacks: when wait() returns, the callbacks added before it
  // began have run (a move's completion marks its buffer lost before anyone
  // waiting for the move looks).
  settled_.store(true, std::memory_order_seq_cst);
  wake_waiters();
  return ok();
}

bool fence::is_signaled() const noexcept {
  if (signaled_.load(std::memory_order_acquire)) return true;
  if (auto done = do_poll()) {
    // const_cast: polling reveals that the work finished; recording that is
    // what signal() does. Every fence is created non-const (make functions).
    (void)const_cast<fence*>(this)->signal(*done);
    return true;
  }
  return false;
}

int fence::error() const noexcept {
  if (!signaled_.load(std::memory_order_acquire)) return 0;
  return error_;  // written before signaled_ was released, never again
}

std::optional<fence_clock::time_point> fence::timestamp() const noexcept {
  mutex_lock lock(mutex_);
  return stamp_;
}

void fence::enable_signaling_once() const noexcept {
  if (signaling_enabled_.exchange(true, std::memory_order_acq_rel)) return;
  // const_cast-free: do_enable_signaling is const-callable by design below.
  const_cast<fence*>(this)->do_enable_signaling();
}

result<fence::callback_id> fence::add_callback(callback cb) { return add_callback_internal(std::move(cb)); }

result<fence::callback_id> fence::add_callback_internal(callback cb) const {
  enable_signaling_once();
  if (is_signaled()) return fail(errc::already_signaled, describe() + ": too late to add a callback");
  mutex_lock lock(mutex_);
  if (signaled_.load(std::memory_order_relaxed)) return fail(errc::already_signaled, describe_locked_free());
  const callback_id id = next_callback_id_++;
  callbacks_.push_back({id, std::move(cb)});
  return id;
}

bool fence::remove_callback(callback_id id) { return remove_callback_internal(id); }

bool fence::remove_callback_internal(callback_id id) const {
  mutex_lock lock(mutex_);
  auto it = std::find_if(callbacks_.begin(), callbacks_.end(),
                         [id](const callback_entry& e) { return e.id == id; });
  if (it != callbacks_.end()) {
    callbacks_.erase(it);
    return true;
  }
  if (running_callback_ == id && running_thread_ != std::this_thread::get_id()) {
    while (running_callback_ == id) lock.wait(callbacks_done_);
  }
  return false;
}

status fence::wait(fence_clock::duration timeout, const cancel_token* cancel) const {
  return wait_until(deadline_after(timeout), cancel);
}

status fence::wait_until(fence_clock::time_point deadline, const cancel_token* cancel) const {
  if (is_signaled()) return ok();
  if (is_cancelled(cancel)) return cancelled_error();
  if (fence_clock::now() >= deadline) return timed_out_error(deadline);

  // Sleep on the fence's own word, not on a callback: a callback meant a
  // waiter mutex the woken thread fought the signaler for, and a
  // remove_callback that waited for the signaler to finish running it.
  enable_signaling_once();
  waiters_.fetch_add(1, std::memory_order_seq_cst);
  status outcome = ok();
  {
    cancel_token::scoped_waker reg(cancel, [this] { wake_waiters(); });
    for (;;) {
      const std::uint32_t seen = wake_word_.load(std::memory_order_seq_cst);
      // Signaled and its callbacks run (is_signaled may signal it here, by
      // polling, and then runs them on this thread before it returns).
      if (is_signaled() && settled_.load(std::memory_order_seq_cst)) break;
      if (is_cancelled(cancel)) {
        outcome = cancelled_error();
        break;
      }
      if (!futex_wait(wake_word_, seen, deadline)) {
        // Out of time. Signaled but still running callbacks counts as
        // signaled, as it does for a wait that starts then.
        if (!is_signaled()) outcome = timed_out_error(deadline);
        break;
      }
    }
  }
  waiters_.fetch_sub(1, std::memory_order_seq_cst);
  return outcome;
}

void fence::wake_waiters() const noexcept {
  wake_word_.fetch_add(1, std::memory_order_seq_cst);
  if (waiters_.load(std::memory_order_seq_cst) != 0) futex_wake_all(wake_word_);
}

std::string fence::describe_locked_free() const {
  // Used while mutex_ is held: reads only immutable fields and atomics.
  std::string s(driver_name());
  s += " fence " + std::to_string(context_) + ":" + std::to_string(seqno_);
  s += signaled_.load(std::memory_order_acquire) ? " (already signaled)" : " (unsignaled)";
  return s;
}

std::string fence::describe() const {
  std::string s(driver_name());
  s += " fence " + std::to_string(context_) + ":" + std::to_string(seqno_);
  if (is_signaled()) {
    s += " signaled";
    if (const int e = error(); e != 0) s += " error=" + std::to_string(e);
  } else {
    s += " unsignaled";
  }
  return s;
}

// ------------------------------------------------------------- wait_any / all

result<std::size_t> wait_any(std::span<const fence_ptr> fences, fence_clock::duration timeout,
                             const cancel_token* cancel) {
  if (fences.empty()) return fail(errc::invalid_argument, "wait_any: empty fence list");
  for (std::size_t i = 0; i < fences.size(); ++i) {
    if (!fences[i]) return fail(errc::invalid_argument, "wait_any: fence " + std::to_string(i) + " is null");
  }
  auto first_signaled = [&]() -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < fences.size(); ++i) {
      if (fences[i]->is_signaled()) return i;
    }
    return std::nullopt;
  };
  if (auto i = first_signaled()) return *i;
  if (is_cancelled(cancel)) return cancelled_error().err();
  const auto deadline = deadline_after(timeout);
  if (fence_clock::now() >= deadline) return timed_out_error(deadline).err();

  waiter w;
  std::vector<std::optional<fence::callback_id>> ids(fences.size());
  for (std::size_t i = 0; i < fences.size(); ++i) {
    auto id = fences[i]->add_callback_internal([&w](const fence&) { w.wake(); });
    if (!id) {
      w.wake();  // already signaled: nothing to wait for
      break;
    }
    ids[i] = *id;
  }
  {
    cancel_token::scoped_waker reg(cancel, [&w] { w.wake(); });
    mutex_lock lock(w.mutex);
    while (!w.woken && !is_cancelled(cancel)) {
      if (deadline == fence_clock::time_point::max()) {
        lock.wait(w.cv);
      } else if (lock.wait_until(w.cv, deadline) == std::cv_status::timeout) {
        break;
      }
    }
  }
  for (std::size_t i = 0; i < fences.size(); ++i) {
    if (ids[i]) (void)fences[i]->remove_callback_internal(*ids[i]);
  }
  if (auto i = first_signaled()) return *i;
  if (is_cancelled(cancel)) return cancelled_error().err();
  return timed_out_error(deadline).err();
}

status wait_all(std::span<const fence_ptr> fences, fence_clock::duration timeout,
                const cancel_token* cancel) {
  for (std::size_t i = 0; i < fences.size(); ++i) {
    if (!fences[i]) return fail(errc::invalid_argument, "wait_all: fence " + std::to_string(i) + " is null");
  }
  const auto deadline = deadline_after(timeout);
  // Waiting for each in turn is enough: all must signal, and each wait uses
  // the same absolute deadline.
  for (const auto& f : fences) {
    if (auto s = f->wait_until(deadline, cancel); !s) return s;
  }
  return ok();
}

// ----------------------------------------------------------- deadline_watchdog


}  // namespace xbuf
