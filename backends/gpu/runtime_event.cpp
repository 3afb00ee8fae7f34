// SPDX-License-Identifier: MIT
#include "backends/gpu/runtime_event.hpp"

namespace xbuf::gpu {

runtime_event::runtime_event(std::shared_ptr<gpu_device> dev, event_t event) noexcept
    : dev_(std::move(dev)), event_(event) {}

runtime_event::~runtime_event() {
  device_scope scope(*dev_);
  if (scope.ok()) dev_->runtime->event_destroy(event_);
}

std::optional<int> runtime_event::query() const noexcept { return dev_->runtime->event_query(event_); }

}  // namespace xbuf::gpu
