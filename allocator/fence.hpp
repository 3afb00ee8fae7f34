// SPDX-License-Identifier: MIT
//
// fence.hpp - one-shot completion of asynchronous work (dma_fence analog).
//
// Overview
//   A fence stands for work that finishes later: a copy, a kernel, a client's
//   use of a buffer. It starts unsignaled and signals exactly once, optionally
//   with an error (a negative errno such as -EIO after a device reset, or
//   -ETIMEDOUT when a deadline passed). Fences are shared (fence_ptr) and live
//   as long as anyone holds them.
//
//   Every fence belongs to a *timeline*: a context id plus a seqno. Fences made
//   by one xbuf::timeline signal in seqno order: signaling seqno N first
//   signals every earlier unsignaled fence of that timeline (work on one
//   engine completes in submission order).
//
// Rules
//   - A fence must signal in finite time. Whoever creates one owns that duty;
//     client fences get a deadline (deadline_watchdog) so no client can stall
//     eviction forever.
//   - signal() takes only the fence's own lock, a leaf: it never takes a
//     reservation or manager lock and never waits for memory. It may be called
//     from any thread, including a backend's completion thread.
//   - Callbacks run on the signaling thread after the fence is marked
//     signaled, outside the fence lock, in the order they were added. They may
//     call any const fence function and may signal *other* fences. They must
//     not block on memory allocation or take reservation locks.
//   - The error of the signaled operation (error()) is distinct from the
//     result of a call: add_callback() on a signaled fence returns
//     errc::already_signaled whatever error the fence carries, and wait()
//     returns ok for a fence that signaled with an error.
//   - Lock order (whole project): reservation locks -> manager/heap mutex ->
//     fence lock (leaf).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "allocator/result.hpp"

namespace xbuf {

using fence_clock = std::chrono::steady_clock;

// "Wait forever" for every timeout parameter.
inline constexpr fence_clock::duration wait_forever = fence_clock::duration::max();

// Cancels waits, as a signal interrupts a kernel wait with -ERESTARTSYS.
// Sticky: once cancelled, every current and later wait using it returns
// errc::cancelled. Thread-safe; must outlive the waits that use it.
class cancel_token {
 public:
  cancel_token() = default;
  cancel_token(const cancel_token&) = delete;
  cancel_token& operator=(const cancel_token&) = delete;

  // Context: never blocks for long; may be called from any thread or a fence callback.
  void cancel();
  bool cancelled() const noexcept { return cancelled_.load(std::memory_order_acquire); }

  // Wakes a waiter when the token is cancelled, for the scope of one wait:
  // `wake` is called at most once, from cancel(), if that happens while the
  // scoped_waker lives (not if the token was already cancelled - check
  // cancelled() after constructing it). The destructor returns only once a
  // running `wake` has finished, so `wake` may touch the waiter's stack.
  // Lock order: cancel() runs `wake` under the token's mutex, so `wake` may
  // take a leaf lock but must not cancel, register or unregister.
  // A null token makes this a no-op.
  class scoped_waker {
   public:
    scoped_waker(const cancel_token* token, std::function<void()> wake);
    ~scoped_waker();
    scoped_waker(const scoped_waker&) = delete;
    scoped_waker& operator=(const scoped_waker&) = delete;

   private:
    cancel_token* token_ = nullptr;  // null when not registered
    std::uint64_t id_ = 0;
  };

 private:
  std::atomic<bool> cancelled_{false};
  std::mutex mutex_;
  std::uint64_t next_waker_ = 1;  // guarded by mutex_
  std::vector<std::pair<std::uint64_t, std::function<void()>>> wakers_;  // guarded by mutex_
};

class fence;
using fence_ptr = std::shared_ptr<fence>;

class fence : public std::enable_shared_from_this<fence> {
 public:
  using callback = std::function<void(const fence&)>;
  using callback_id = std::uint64_t;

  // A plain software fence on (context, seqno). Use a timeline to get ordered
  // seqnos; this is for one-off fences and for tests.
  // Context: may allocate.
  static fence_ptr create(std::uint64_t context, std::uint64_t seqno);

  // An already-signaled fence (dma_fence_get_stub), optionally carrying an error.
  static fence_ptr signaled(int error = 0);

  // A fresh context id, unique in this process (dma_fence_context_alloc).
  static std::uint64_t allocate_context() noexcept;

  fence(const fence&) = delete;
  fence& operator=(const fence&) = delete;
  virtual ~fence();

  std::uint64_t context() const noexcept { return context_; }
  std::uint64_t seqno() const noexcept { return seqno_; }

  // Signals the fence, storing `error` (0 or a negative errno) first.
  // Returns ok if this call signaled it; errc::already_signaled if it was
  // already signaled (nothing changes: the first call wins).
  // A timeline fence first signals every earlier unsignaled fence of its timeline.
  // Context: callable from any thread and from fence callbacks; runs callbacks.
  // Locking: takes the fence lock (leaf); caller must not hold it.
  status signal(int error = 0) noexcept;

  // True once signaled. For a backend fence kind whose do_poll() reports
  // completion, this also signals it. Context: never blocks.
  bool is_signaled() const noexcept;

  // 0 while unsignaled or when the work succeeded; the stored negative errno otherwise.
  int error() const noexcept;

  // When it signaled (steady clock), if it has.
  std::optional<fence_clock::time_point> timestamp() const noexcept;

  // Registers `cb`, to be called once when the fence signals.
  // Returns its id, or errc::already_signaled (cb is not called and not kept)
  // if the fence had signaled already - never the fence's own error.
  // Context: may allocate; never blocks on the fence.
  result<callback_id> add_callback(callback cb);

  // Removes a callback added by add_callback. Returns true if it was removed
  // before running; false if it already ran or the id is unknown. If the
  // callback is running on another thread right now, waits for it to return,
  // so after this call the callback no longer touches the caller's state.
  // Must not be called from that callback itself (returns false at once there).
  bool remove_callback(callback_id id);

  // Waits until the fence signals, the timeout passes, or `cancel` fires.
  // Returns ok (signaled - check error() for the work's own result),
  // errc::timed_out, or errc::cancelled. A zero timeout only tests.
  // Context: blocks; never call on an io_context thread or under a reservation
  // lock that the signaler needs.
  status wait(fence_clock::duration timeout = wait_forever, const cancel_token* cancel = nullptr) const;
  status wait_until(fence_clock::time_point deadline, const cancel_token* cancel = nullptr) const;

  // "sim-copy", "cuda-event", "software", ... for logs and xbuf stat.
  virtual std::string_view driver_name() const noexcept { return "software"; }
  // "software 3:17 signaled error=-5" - for error messages and stats.
  std::string describe() const;

 protected:
  fence(std::uint64_t context, std::uint64_t seqno);

  // --- Backend fence kinds override these (all optional) ---
  //
  // do_enable_signaling: called once, the first time anybody waits on or adds
  // a callback to this fence, without the fence lock held. A kind that only
  // learns of completion by asking the hardware arranges here that signal()
  // will be called (e.g. hands the fence to its poller thread).
  // Default: nothing - the creator signals on its own.
  virtual void do_enable_signaling() noexcept {}
  //
  // do_poll: asks the hardware whether the work finished, without blocking.
  // nullopt = still running; a value = finished with that error (0 or -errno),
  // and the fence is then signaled with it. Called by is_signaled() and at the
  // start of a wait. Default: nullopt (rely on signal()).
  virtual std::optional<int> do_poll() const noexcept { return std::nullopt; }

 private:
  friend class timeline;
  friend result<std::size_t> wait_any(std::span<const fence_ptr>, fence_clock::duration,
                                      const cancel_token*);
  struct callback_entry {
    callback_id id = 0;
    callback fn;
  };

  status signal_one(int error) noexcept;
  void enable_signaling_once() const noexcept;
  // Waiting does not change a fence's observable state, so waits work on
  // const fences; these are the bookkeeping the waits need.
  result<callback_id> add_callback_internal(callback cb) const;
  bool remove_callback_internal(callback_id id) const;
  std::string describe_locked_free() const;

  const std::uint64_t context_;
  const std::uint64_t seqno_;
  std::shared_ptr<class timeline> timeline_;  // set once for timeline fences, before sharing

  mutable std::mutex mutex_;  // leaf lock
  mutable std::condition_variable callbacks_done_;
  std::atomic<bool> signaled_{false};
  int error_ = 0;                                       // written once before signaled_ is set
  std::optional<fence_clock::time_point> stamp_;        // guarded by mutex_
  mutable std::deque<callback_entry> callbacks_;        // guarded by mutex_; not yet run
  mutable callback_id next_callback_id_ = 1;            // guarded by mutex_
  mutable callback_id running_callback_ = 0;            // guarded by mutex_: 0 = none
  std::thread::id running_thread_;                      // guarded by mutex_
  mutable std::atomic<bool> signaling_enabled_{false};
};

// A sequence of fences on one context that signal in order (a copy engine,
// a client's job queue, sw_sync's timeline).
class timeline : public std::enable_shared_from_this<timeline> {
 public:
  static std::shared_ptr<timeline> create(std::string name);

  std::uint64_t context() const noexcept { return context_; }
  const std::string& name() const noexcept { return name_; }

  // A new unsignaled fence with the next seqno. Context: may allocate.
  fence_ptr next_fence();

  // Signals every pending fence with seqno <= `seqno`, in order, with `error`.
  void signal_through(std::uint64_t seqno, int error = 0) noexcept;

  // Highest seqno handed out so far (0 = none).
  std::uint64_t last_seqno() const noexcept;

 private:
  friend class fence;
  explicit timeline(std::string name);
  // Signals pending fences with seqno < `seqno` (called by fence::signal).
  void signal_predecessors(std::uint64_t seqno) noexcept;
  // Unsignaled fences with seqno <= max_seqno, in order.
  std::vector<fence_ptr> collect_pending(std::uint64_t max_seqno);

  const std::uint64_t context_;
  const std::string name_;
  mutable std::mutex mutex_;                 // leaf, never held while signaling
  std::uint64_t last_seqno_ = 0;             // guarded by mutex_
  std::deque<std::weak_ptr<fence>> pending_;  // guarded by mutex_, seqno order
};

// Waits until one of `fences` signals. Returns the index of a signaled fence
// (the lowest index if several are), errc::timed_out, errc::cancelled, or
// errc::invalid_argument for an empty list or a null fence.
// Fences of any kind and timeline may be mixed.
result<std::size_t> wait_any(std::span<const fence_ptr> fences,
                             fence_clock::duration timeout = wait_forever,
                             const cancel_token* cancel = nullptr);

// Waits until every fence signals. ok, errc::timed_out, errc::cancelled, or
// errc::invalid_argument for a null fence. An empty list is trivially ok.
status wait_all(std::span<const fence_ptr> fences,
                fence_clock::duration timeout = wait_forever,
                const cancel_token* cancel = nullptr);

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
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<entry> entries_;  // guarded by mutex_; min-heap on deadline
  std::size_t swept_size_ = 0;  // guarded by mutex_: size after the last sweep
  bool stop_ = false;           // guarded by mutex_
  std::atomic<std::uint64_t> expired_{0};
  std::thread thread_;
};

}  // namespace xbuf
