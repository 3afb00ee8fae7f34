// SPDX-License-Identifier: MIT
//
// detail/hip_device.hpp - per-device state of the HIP backend (internal).
//
// Rules
//   - As detail/cuda_device.hpp: shared by backend, blocks and events;
//     submit_mutex is a leaf that orders stream submissions and seqnos.
//   - device_scope sets HIP's per-thread current device and restores the
//     previous one; calls that allocate or create streams/events need it.
#pragma once

#include <hip/hip_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "backends/gpu_common/event_fence.hpp"
#include "backends/hip/hip_runtime.hpp"

namespace xbuf::hip_detail {

struct hip_device {
  std::shared_ptr<const hip_runtime> runtime;
  int index = -1;
  hipStream_t stream = nullptr;
  bool vmm = false;
  std::size_t granularity = 4096;
  std::vector<int> peers;
  std::uint64_t fence_context = 0;

  std::mutex submit_mutex;
  std::uint64_t last_seqno = 0;  // guarded by submit_mutex

  hip_device() = default;
  hip_device(const hip_device&) = delete;
  hip_device& operator=(const hip_device&) = delete;
  ~hip_device();
};

class device_scope {
 public:
  explicit device_scope(const hip_device& dev) noexcept;
  ~device_scope();
  device_scope(const device_scope&) = delete;
  device_scope& operator=(const device_scope&) = delete;
  bool ok() const noexcept { return rc_ == hipSuccess; }
  status check(std::string_view what) const;

 private:
  const hip_device& dev_;
  int previous_ = -1;
  hipError_t rc_;
};

class hip_event final : public gpu::gpu_event {
 public:
  hip_event(std::shared_ptr<hip_device> dev, hipEvent_t event) noexcept : dev_(std::move(dev)), event_(event) {}
  ~hip_event() override;
  hip_event(const hip_event&) = delete;
  hip_event& operator=(const hip_event&) = delete;
  std::optional<int> query() const noexcept override;
  hipEvent_t handle() const noexcept { return event_; }

 private:
  std::shared_ptr<hip_device> dev_;
  hipEvent_t event_;
};

}  // namespace xbuf::hip_detail
