// SPDX-License-Identifier: MIT
//
// detail/cuda_event.hpp - a CUevent behind an event_fence (internal).
//
// Rules
//   - query() is cuEventQuery: CUDA_SUCCESS -> 0, CUDA_ERROR_NOT_READY ->
//     still running, anything else -> the failure as a fence errno (-EIO, or
//     -ENODEV for a lost device). It never blocks and needs no context.
//   - The event is destroyed with the fence; it holds its device so the
//     context outlives it.
#pragma once

#include <cuda.h>

#include <memory>

#include "backends/cuda/detail/cuda_device.hpp"
#include "backends/gpu_common/event_fence.hpp"

namespace xbuf::cuda_detail {

class cuda_event final : public gpu::gpu_event {
 public:
  // Takes ownership of `event`, created in dev's context.
  cuda_event(std::shared_ptr<cuda_device> dev, CUevent event) noexcept;
  ~cuda_event() override;
  cuda_event(const cuda_event&) = delete;
  cuda_event& operator=(const cuda_event&) = delete;

  std::optional<int> query() const noexcept override;
  CUevent handle() const noexcept { return event_; }
  const cuda_device& device() const noexcept { return *dev_; }

 private:
  std::shared_ptr<cuda_device> dev_;
  CUevent event_;
};

}  // namespace xbuf::cuda_detail
