// SPDX-License-Identifier: MIT
//
// event_fence.hpp - a fence backed by a GPU runtime event (CUDA or HIP).
//
// Overview
//   A copy on a GPU stream finishes when the event recorded after it on the
//   stream completes. event_fence is the xbuf fence for that: do_poll() asks
//   the runtime (cuEventQuery / hipEventQuery) and do_enable_signaling() hands
//   the fence to an event_poller thread, so waiters and callbacks are woken
//   without anyone calling into the runtime on their behalf.
//
//   The event may arrive after the fence was handed out: a copy that waits
//   for foreign fences is enqueued later (deferred_submitter), and until then
//   the fence has no event and polls as "still running".
//
// Rules
//   - attach() is called at most once, by whoever enqueued the work; after it
//     the event is owned by the fence and destroyed with it.
//   - A fence whose work never reaches the runtime (enqueue failed, upstream
//     fence failed, backend shut down) must be signaled with an error by the
//     code that gave up on it: nothing else would signal it.
//   - gpu_event::query() is called from any thread (poller, waiters, whoever
//     asks is_signaled()) and must not block or take xbuf locks.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/fence.hpp"

namespace xbuf::gpu {

class event_poller;

// One recorded runtime event. Subclasses own the runtime handle and keep the
// runtime (its loader, the device's context) alive for as long as they live.
class gpu_event {
 public:
  virtual ~gpu_event() = default;
  // nullopt while the work runs; 0 once it completed; a negative errno if the
  // runtime reports that it failed (e.g. -EIO, -ENODEV after a reset).
  // Context: never blocks; callable from any thread.
  virtual std::optional<int> query() const noexcept = 0;
};

class event_fence final : public fence {
  struct passkey {};

 public:
  // driver_name: "cuda-event", "hip-event". poller: where the fence goes when
  // someone first waits on it; held weakly, because the poller's thread holds
  // the fences it watches (a strong reference would be a cycle). When the
  // poller is gone (backend destroyed) waits rely on do_poll() alone.
  // Context: may allocate.
  static std::shared_ptr<event_fence> create(std::uint64_t context, std::uint64_t seqno,
                                             std::string_view driver_name,
                                             std::weak_ptr<event_poller> poller);

  event_fence(passkey, std::uint64_t context, std::uint64_t seqno, std::string_view driver_name,
              std::weak_ptr<event_poller> poller);
  ~event_fence() override;

  // Gives the fence its event (once; a second call is a programming error,
  // asserted, and the extra event is destroyed). Context: never blocks.
  void attach(std::unique_ptr<gpu_event> event) noexcept;
  bool has_event() const noexcept { return event_.load(std::memory_order_acquire) != nullptr; }

  // An opaque tag naming the backend instance that made the fence, so that a
  // backend can recognise its own fences (and wait for them on the GPU)
  // without trusting fences of another backend of the same kind.
  void set_owner(const void* owner) noexcept { owner_ = owner; }
  const void* owner() const noexcept { return owner_; }
  // The event, for the owning backend's cuStreamWaitEvent; nullptr before attach.
  const gpu_event* event() const noexcept { return event_.load(std::memory_order_acquire); }

  std::string_view driver_name() const noexcept override { return driver_name_; }

 protected:
  void do_enable_signaling() noexcept override;
  std::optional<int> do_poll() const noexcept override;

 private:
  const std::string driver_name_;
  const std::weak_ptr<event_poller> poller_;
  const void* owner_ = nullptr;
  std::atomic<gpu_event*> event_{nullptr};  // owned; set once by attach()
};

}  // namespace xbuf::gpu
