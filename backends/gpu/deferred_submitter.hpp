// SPDX-License-Identifier: MIT
//
// deferred_submitter.hpp - starts GPU work once foreign fences have signaled.
//
// Overview
//   backend::copy() must not block on its wait_for fences. Fences of the same
//   GPU backend become cuStreamWaitEvent / hipStreamWaitEvent, but a software
//   fence (a client's job, a sim copy, a fence of another backend) has no
//   runtime event the GPU could wait for. For those the copy is parked here:
//   a callback on every foreign fence counts down, and when the last one
//   signals the job is handed to this submitter's thread, which enqueues it
//   on the stream. Enqueueing on our own thread (not in the fence callback)
//   matters: the signaling thread may be a runtime callback thread that must
//   not call the runtime, and enqueueing may block briefly in the driver.
//   Counting the fences down is core/fence_join.hpp's when_all_signaled;
//   this class adds the thread, the queue and the cancellation.
//
// Rules
//   - A job's start function is called exactly once, on the submitter thread,
//     with 0 when every fence signaled without error, the first fence error
//     (negative errno) otherwise, or -ECANCELED when the submitter shut down
//     before the fences signaled (then it is called on the destroying thread).
//     It must signal the job's result fence itself on every path that does
//     not reach the runtime.
//   - The fence callbacks only decrement a counter and push to a queue under
//     a leaf mutex: they never call the runtime nor take another xbuf lock.
//   - Destroying the submitter runs the jobs already ready, then cancels the
//     jobs still waiting, then joins the thread. The owner destroys it before
//     the streams the jobs enqueue on.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>

#include "core/fence.hpp"

namespace xbuf::gpu {

class deferred_submitter {
 public:
  using start_fn = std::function<void(int upstream_error)>;

  explicit deferred_submitter(std::string name);
  ~deferred_submitter();
  deferred_submitter(const deferred_submitter&) = delete;
  deferred_submitter& operator=(const deferred_submitter&) = delete;

  // Calls `start` on the submitter thread once every fence in `fences` has
  // signaled (see Rules for its argument). Null fences are ignored.
  // Context: never blocks on the fences; may allocate; callable from any
  // thread but not from a callback of one of `fences` that holds its lock.
  void submit_after(std::span<const fence_ptr> fences, start_fn start);

  // Jobs parked or queued right now (for tests and stats).
  std::size_t pending() const;

 private:
  struct job;
  struct shared_state;
  void run();

  std::shared_ptr<shared_state> state_;
  std::thread thread_;
};

}  // namespace xbuf::gpu
