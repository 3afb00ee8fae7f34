// SPDX-License-Identifier: MIT
#include "backends/gpu/event_fence.hpp"

#include <cassert>

#include "backends/gpu/event_poller.hpp"

namespace xbuf::gpu {

std::shared_ptr<event_fence> event_fence::create(std::uint64_t context, std::uint64_t seqno,
                                                 std::string_view driver_name,
                                                 std::weak_ptr<event_poller> poller) {
  return std::make_shared<event_fence>(passkey{}, context, seqno, driver_name, std::move(poller));
}

event_fence::event_fence(passkey, std::uint64_t context, std::uint64_t seqno,
                         std::string_view driver_name, std::weak_ptr<event_poller> poller)
    : fence(context, seqno), driver_name_(driver_name), poller_(std::move(poller)) {}

event_fence::~event_fence() { delete event_.load(std::memory_order_acquire); }

void event_fence::attach(std::unique_ptr<gpu_event> event) noexcept {
  gpu_event* expected = nullptr;
  if (event_.compare_exchange_strong(expected, event.get(), std::memory_order_acq_rel)) {
    (void)event.release();  // now owned by event_
    return;
  }
  assert(!"event_fence::attach called twice");
}

void event_fence::do_enable_signaling() noexcept {
  // The fence is already signaled (e.g. an enqueue failure) or nobody polls
  // it: do_poll() at the start of every wait still sees completion.
  if (auto poller = poller_.lock()) {
    poller->watch(std::static_pointer_cast<event_fence>(shared_from_this()));
  }
}

std::optional<int> event_fence::do_poll() const noexcept {
  const gpu_event* ev = event_.load(std::memory_order_acquire);
  if (ev == nullptr) return std::nullopt;  // not enqueued yet (deferred copy)
  return ev->query();
}

}  // namespace xbuf::gpu
