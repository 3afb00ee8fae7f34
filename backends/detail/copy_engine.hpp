// SPDX-License-Identifier: MIT
//
// copy_engine.hpp - (internal) one thread that performs queued memory copies in
// submission order and signals a fence per copy. The host backend has one; the
// sim backend has one per device (its "DMA engine").
//
// Overview
//   submit() queues a copy and returns its fence at once. The engine thread
//   takes copies in order: it waits (without any engine lock held) until the
//   copy's wait_for fences have signaled, copies the bytes - at a configured
//   rate if one is set - and signals the copy's fence. Because copies run in
//   order, the fences of one engine (one context, increasing seqnos) signal in
//   seqno order: the engine is a timeline, like a GPU copy queue.
//
//   Small jobs run inline: when the engine is idle (nothing queued, nothing
//   in flight), the job's wait_for fences have all signaled, no rate or
//   fence delay is set and the job is at most inline_max_bytes, submit()
//   copies on the caller's thread and returns the fence already signaled.
//   A hand-off to the engine thread costs a wake-up on each side (tens of
//   microseconds on a loaded machine), more than copying a megabyte; the
//   inline job still takes its seqno on the engine's timeline, and the
//   engine thread starts no queued job until it is done, so fences keep
//   signaling in seqno order. Injected failures and reset() apply to it
//   as to any job.
//
//   Faults for tests and the sim: fail_next() makes the next copies fail with
//   -EIO without touching their destination; set_extra_latency() delays each
//   fence after its copy; reset() fails every copy submitted so far with -EIO
//   (in-flight ones stop at the next chunk, before their fence signals).
//
// Rules
//   - A copy's fence signals in finite time: when its copy ends, when a
//     wait_for fence signals with an error (the copy is skipped and its fence
//     carries that error), at reset() (-EIO) or at destruction (-ECANCELED for
//     every copy not finished: the engine does not wait for foreign fences on
//     the way out).
//   - The engine thread never holds mutex_ while it calls into a fence (waits,
//     adds/removes callbacks, signals), so signalers and fence callbacks may
//     call submit() and the fault functions. Its own wake-up callbacks only
//     take mutex_ (a leaf).
//   - A fence never signals while the engine may still write the copy's
//     destination, so the caller may free the blocks as soon as it signals.
//   - The engine holds references to both blocks until just before signaling.
//   - An inline job's fence is signaled on the caller's thread before
//     submit() returns it, under mutex_ (so no queued job signals first):
//     nobody can have added a callback yet, so no callback runs under
//     mutex_ or the caller's locks. Callers must not assume a copy is
//     asynchronous: submit() may return with the bytes already moved.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "backends/backend.hpp"
#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf::detail {

// The fence kind an engine hands out; driver_name says whose engine.
class engine_fence final : public fence {
 public:
  // driver must have static storage ("sim-copy", "host-copy").
  engine_fence(std::uint64_t context, std::uint64_t seqno, std::string_view driver)
      : fence(context, seqno), driver_(driver) {}
  std::string_view driver_name() const noexcept override { return driver_; }

 private:
  std::string_view driver_;
};

// The inline limit the sim and host engines use: at memcpy speed a copy of
// this size takes about as long as the two wake-ups a hand-off costs.
inline constexpr std::size_t inline_copy_max = std::size_t{1} << 20;

struct copy_engine_config {
  std::string name;                 // for messages and the thread name: "sim0 copy engine"
  std::string_view driver_name;     // fence driver name, static storage
  double bytes_per_second = 0;      // 0 = as fast as memcpy
  // Jobs up to this size run on the submitter's thread when the engine is
  // idle (see Overview); 0 = never. Only without a rate.
  std::size_t inline_max_bytes = 0;
};

struct copy_engine_stats {
  std::uint64_t submitted = 0;
  std::uint64_t completed = 0;  // fence signaled with 0
  std::uint64_t failed = 0;     // fence signaled with an error
  std::uint64_t bytes_copied = 0;  // copies and fills
  std::uint64_t inline_jobs = 0;   // of submitted: run on the submitter's thread
};

class copy_engine {
 public:
  // Starts the engine thread. Errors: io_error (the thread could not start).
  static result<std::unique_ptr<copy_engine>> create(copy_engine_config config);

  // Signals every unfinished copy with -ECANCELED (in order) and joins the
  // thread. Must not run on the engine thread (i.e. from one of its fences'
  // callbacks).
  ~copy_engine();
  copy_engine(const copy_engine&) = delete;
  copy_engine& operator=(const copy_engine&) = delete;

  // Queues a copy of `bytes` from src to dst after `wait_for`. The pointers
  // must stay valid until the fence signals; dst_keep/src_keep are held until
  // then (just before signaling) to make that so.
  // Errors: bad_state (the engine is shutting down).
  // Context: never blocks on a fence; allocates; callable from fence callbacks.
  result<fence_ptr> submit(void* dst, const void* src, std::size_t bytes,
                           std::span<const fence_ptr> wait_for, memory_block_ptr dst_keep,
                           memory_block_ptr src_keep);

  // Queues setting `bytes` at dst to `value` after `wait_for`: a job like a
  // copy (same queue, same fence timeline, same faults). dst_keep is held
  // until the fence signals. Errors and context: as submit.
  result<fence_ptr> submit_fill(void* dst, std::uint8_t value, std::size_t bytes,
                                std::span<const fence_ptr> wait_for, memory_block_ptr dst_keep);

  // The next `count` copies submitted after this call fail with -EIO, their
  // destination untouched (they still wait for their wait_for fences first).
  void fail_next(unsigned count);

  // Each later copy's fence signals `extra` after its copy is done (0 = off;
  // clamped to [0, 24 h]).
  void set_extra_latency(fence_clock::duration extra);

  // Every copy submitted before this call and not yet signaled signals with
  // `error` (a negative errno, -EIO for a device reset), in order; copies
  // submitted afterwards run normally. Blocks until those fences have
  // signaled, except on the engine thread itself (a fence callback), where it
  // returns at once and the engine fails them right after.
  void reset(int error = -EIO);

  std::uint64_t context() const noexcept { return context_; }
  copy_engine_stats stats() const;

 private:
  struct job {
    std::uint64_t seqno = 0;
    std::uint64_t reset_generation = 0;
    void* dst = nullptr;
    const void* src = nullptr;     // null for a fill
    std::uint8_t fill_value = 0;   // what a fill writes
    std::size_t bytes = 0;
    bool inject_failure = false;
    fence_clock::duration extra_latency{};
    std::vector<fence_ptr> wait_for;
    memory_block_ptr dst_keep;
    memory_block_ptr src_keep;
    fence_ptr done;
  };

  explicit copy_engine(copy_engine_config config);
  static job make_job(void* dst, const void* src, std::size_t bytes, std::span<const fence_ptr> wait_for,
                      memory_block_ptr dst_keep, memory_block_ptr src_keep);
  // Queues `j` (dst, src or fill_value, bytes, wait_for, keeps filled in).
  result<fence_ptr> enqueue(job j);
  void run() noexcept;
  int execute(job& j) noexcept;
  int wait_dependencies(job& j) noexcept;
  // Runs `j` (its seqno taken, inline_busy_ set) on this thread and signals it.
  void run_inline(job& j) noexcept;
  int abort_code_locked(const job& j) const noexcept XBUF_REQUIRES(mutex_);

  const copy_engine_config config_;
  const std::uint64_t context_;

  mutable mutex mutex_;  // leaf: never held while calling into a fence
  std::condition_variable wake_;         // engine thread: new work, fence signaled, reset, stop
  std::condition_variable progress_;     // reset() waiters: signaled_through_ advanced
  std::deque<job> queue_ XBUF_GUARDED_BY(mutex_);  // seqno order
  std::uint64_t next_seqno_ XBUF_GUARDED_BY(mutex_) = 1;
  std::uint64_t signaled_through_ XBUF_GUARDED_BY(mutex_) = 0;  // every seqno <= this has signaled
  std::uint64_t reset_generation_ XBUF_GUARDED_BY(mutex_) = 0;
  int reset_error_ XBUF_GUARDED_BY(mutex_) = -EIO;  // error of the latest reset
  std::uint64_t wake_generation_ XBUF_GUARDED_BY(mutex_) = 0;  // bumped by dependency callbacks
  unsigned fail_next_ XBUF_GUARDED_BY(mutex_) = 0;
  fence_clock::duration extra_latency_ XBUF_GUARDED_BY(mutex_){};
  bool stopping_ XBUF_GUARDED_BY(mutex_) = false;
  bool inline_busy_ XBUF_GUARDED_BY(mutex_) = false;  // a submitter runs a job inline
  copy_engine_stats stats_ XBUF_GUARDED_BY(mutex_);
  std::thread thread_;
};

}  // namespace xbuf::detail
