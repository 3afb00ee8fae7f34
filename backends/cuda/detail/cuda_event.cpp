// SPDX-License-Identifier: MIT
#include "backends/cuda/detail/cuda_event.hpp"

#include "backends/cuda/cuda_error.hpp"

namespace xbuf::cuda_detail {

cuda_event::cuda_event(std::shared_ptr<cuda_device> dev, CUevent event) noexcept
    : dev_(std::move(dev)), event_(event) {}

cuda_event::~cuda_event() {
  context_scope scope(*dev_);
  if (scope.ok()) (void)dev_->driver->cuEventDestroy_v2(event_);
}

std::optional<int> cuda_event::query() const noexcept {
  const CUresult rc = dev_->driver->cuEventQuery(event_);
  if (rc == CUDA_ERROR_NOT_READY) return std::nullopt;
  return cuda_fence_errno(rc);
}

}  // namespace xbuf::cuda_detail
