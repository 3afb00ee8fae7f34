// SPDX-License-Identifier: MIT
#include "backends/hip/detail/hip_device.hpp"

#include "backends/hip/hip_error.hpp"

namespace xbuf::hip_detail {

hip_device::~hip_device() {
  if (runtime == nullptr || stream == nullptr) return;
  device_scope scope(*this);
  (void)runtime->hipStreamSynchronize(stream);
  (void)runtime->hipStreamDestroy(stream);
}

device_scope::device_scope(const hip_device& dev) noexcept : dev_(dev), rc_(hipSuccess) {
  if (dev_.runtime->hipGetDevice(&previous_) != hipSuccess) previous_ = -1;
  if (previous_ != dev_.index) rc_ = dev_.runtime->hipSetDevice(dev_.index);
}

device_scope::~device_scope() {
  if (previous_ >= 0 && previous_ != dev_.index) (void)dev_.runtime->hipSetDevice(previous_);
}

status device_scope::check(std::string_view what) const {
  if (ok()) return status{};
  return hip_error(dev_.runtime.get(), rc_, "hipSetDevice(" + std::to_string(dev_.index) + ") for " + std::string(what));
}

hip_event::~hip_event() { (void)dev_->runtime->hipEventDestroy(event_); }

std::optional<int> hip_event::query() const noexcept {
  const hipError_t rc = dev_->runtime->hipEventQuery(event_);
  if (rc == hipErrorNotReady) return std::nullopt;
  return hip_fence_errno(rc);
}

}  // namespace xbuf::hip_detail
