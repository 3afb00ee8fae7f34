// SPDX-License-Identifier: MIT
//
// runtime_event.hpp - a runtime event behind an event_fence.
//
// Rules
//   - query() is the runtime's event_query: never blocks, needs no current
//     device (gpu_prim.hpp).
//   - The event is destroyed with the fence, inside a device_scope; it holds
//     its device so the context and runtime outlive it.
#pragma once

#include <memory>
#include <optional>

#include "backends/gpu/event_fence.hpp"
#include "backends/gpu/gpu_device.hpp"

namespace xbuf::gpu {

class runtime_event final : public gpu_event {
 public:
  // Takes ownership of `event`, created on `dev`.
  runtime_event(std::shared_ptr<gpu_device> dev, event_t event) noexcept;
  ~runtime_event() override;
  runtime_event(const runtime_event&) = delete;
  runtime_event& operator=(const runtime_event&) = delete;

  std::optional<int> query() const noexcept override;
  event_t handle() const noexcept { return event_; }

 private:
  std::shared_ptr<gpu_device> dev_;
  event_t event_;
};

}  // namespace xbuf::gpu
