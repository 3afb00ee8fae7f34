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
//     client fences get a deadline (allocator/deadline_watchdog.hpp) so no client can stall
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

#include "core/cancel_token.hpp"
#include "core/clock.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {



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
  // Bumps wake_word_ and wakes its sleepers (signal, or a waiter's cancel).
  void wake_waiters() const noexcept;
  std::string describe_locked_free() const;

  const std::uint64_t context_;
  const std::uint64_t seqno_;
  std::shared_ptr<class timeline> timeline_;  // set once for timeline fences, before sharing

  mutable mutex mutex_;  // leaf lock
  mutable std::condition_variable callbacks_done_;
  std::atomic<bool> signaled_{false};
  // Threads in wait_until sleep on wake_word_ (core/futex.hpp); signal_one
  // sets settled_ after the callbacks, then bumps the word and wakes them
  // when waiters_ says someone sleeps. Dekker-style:
  // a waiter counts itself in before it reads the word and checks the fence,
  // the signaler bumps the word before it reads the count (all seq_cst), so
  // either the waiter sees the fence signaled or the signaler sees it waiting.
  mutable std::atomic<std::uint32_t> wake_word_{0};
  std::atomic<bool> settled_{false};  // signaled and every callback run: what sleeping waiters wait for
  mutable std::atomic<std::uint32_t> waiters_{0};
  int error_ = 0;                                       // written once before signaled_ is set
  std::optional<fence_clock::time_point> stamp_ XBUF_GUARDED_BY(mutex_);
  mutable std::deque<callback_entry> callbacks_ XBUF_GUARDED_BY(mutex_);  // not yet run
  mutable callback_id next_callback_id_ XBUF_GUARDED_BY(mutex_) = 1;
  mutable callback_id running_callback_ XBUF_GUARDED_BY(mutex_) = 0;  // 0 = none
  std::thread::id running_thread_ XBUF_GUARDED_BY(mutex_);
  mutable std::atomic<bool> signaling_enabled_{false};
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


}  // namespace xbuf
