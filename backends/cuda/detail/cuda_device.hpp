// SPDX-License-Identifier: MIT
//
// detail/cuda_device.hpp - per-device state of the CUDA backend (internal).
//
// Overview
//   One cuda_device per GPU: its primary context (retained), its dedicated
//   copy stream, what it supports (VMM, POSIX-fd export), its allocation
//   granularity and the peers allowed to map its memory. Shared (shared_ptr)
//   by the backend, every block and every event on it, so the context and
//   stream live until the last of them is gone.
//
// Rules
//   - context_scope pushes the device's context for one scope and pops it;
//     every driver call that needs a context runs inside one.
//   - submit_mutex serializes enqueueing on `stream` together with the fence
//     seqno, so seqno order is stream order. It is a leaf: no xbuf lock is
//     taken and no fence is signaled while it is held.
#pragma once

#include <cuda.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "backends/cuda/cuda_driver.hpp"
#include "core/result.hpp"

namespace xbuf::cuda_detail {

struct cuda_device {
  std::shared_ptr<const cuda_driver> driver;
  int index = -1;           // backend index
  CUdevice handle = 0;      // driver ordinal
  CUcontext context = nullptr;
  CUstream stream = nullptr;
  bool vmm = false;         // cuMemCreate path in use
  bool posix_fd = false;    // VMM allocations request the POSIX-fd handle type
  std::size_t granularity = 4096;
  std::vector<CUdevice> peers;  // devices mapped into every allocation besides this one
  std::uint64_t fence_context = 0;

  std::mutex submit_mutex;
  std::uint64_t last_seqno = 0;  // guarded by submit_mutex

  cuda_device() = default;
  cuda_device(const cuda_device&) = delete;
  cuda_device& operator=(const cuda_device&) = delete;
  ~cuda_device();  // synchronizes and destroys the stream, releases the context
};

// Pushes a device's context for the lifetime of the scope.
class context_scope {
 public:
  explicit context_scope(const cuda_device& dev) noexcept;
  ~context_scope();
  context_scope(const context_scope&) = delete;
  context_scope& operator=(const context_scope&) = delete;
  // The push failed (driver shutting down): callers skip their calls.
  bool ok() const noexcept { return rc_ == CUDA_SUCCESS; }
  status check(std::string_view what) const;

 private:
  const cuda_device& dev_;
  CUresult rc_;
};

// Opens device `ordinal`: name, memory, PCI address, NUMA node, context,
// stream, VMM support. Errors name the failing call.
struct opened_device {
  std::shared_ptr<cuda_device> device;
  device_info info;
};
result<opened_device> open_cuda_device(std::shared_ptr<const cuda_driver> driver, int ordinal,
                                       bool use_vmm);

}  // namespace xbuf::cuda_detail
