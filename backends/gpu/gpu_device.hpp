// SPDX-License-Identifier: MIT
//
// gpu_device.hpp - one GPU of a stream-ordered runtime, as the skeleton holds it.
//
// Overview
//   A gpu_device is what the backend keeps per GPU: the runtime's device
//   (with CUDA's retained primary context), its dedicated copy stream, what
//   it supports (VMM, POSIX-fd export), its allocation granularity and the
//   peers allowed to map its memory. It is shared (shared_ptr) by the
//   backend, every block and every event on it, so the context and stream
//   live until the last of them is gone.
//
//   open_device() is the one place a device is opened, for every runtime.
//
// Rules
//   - device_scope makes the device current for one scope and restores the
//     caller's state afterwards (the application's own current context or
//     device is left as it was). Every "Current" primitive (gpu_prim.hpp)
//     runs inside a scope whose ok() is true.
//   - submit_mutex serializes enqueueing on `stream` together with the fence
//     seqno, so seqno order is stream order. It is a leaf: no other xbuf lock
//     is taken and no fence is signaled while it is held.
//   - Fields other than last_seqno are written by open_device and the
//     factory only, before the device is shared; read-only afterwards.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"
#include "backends/gpu/gpu_prim.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"

namespace xbuf::gpu {

struct gpu_device {
  std::shared_ptr<const gpu_runtime> runtime;
  device_ref ref;
  bool opened = false;      // open_device succeeded: the destructor closes it
  stream_t stream = nullptr;
  bool vmm = false;         // VMM allocations (vmm_create & co.) in use
  bool export_fd = false;   // VMM allocations carry the POSIX-fd handle type
  std::size_t granularity = 4096;
  std::vector<device_ref> peers;  // devices mapped into every VMM allocation besides this one
  std::uint64_t fence_context = 0;

  xbuf::mutex submit_mutex;  // leaf
  std::uint64_t last_seqno XBUF_GUARDED_BY(submit_mutex) = 0;

  int index() const noexcept { return ref.ordinal; }

  gpu_device() = default;
  gpu_device(const gpu_device&) = delete;
  gpu_device& operator=(const gpu_device&) = delete;
  ~gpu_device();  // synchronizes and destroys the stream, closes the device
};

// Makes a device current for the lifetime of the scope.
class device_scope {
 public:
  explicit device_scope(const gpu_device& dev);
  ~device_scope();
  device_scope(const device_scope&) = delete;
  device_scope& operator=(const device_scope&) = delete;

  // False when the device could not be made current (driver shutting down,
  // device lost): callers skip their runtime calls.
  bool ok() const noexcept { return entered_.has_value(); }
  // ok, or the failure "<call>(device N) for <what>: <runtime error>".
  status check(std::string_view what) const;

 private:
  const gpu_device& dev_;
  current_token saved_;
  status entered_;
};

struct opened_device {
  std::shared_ptr<gpu_device> device;
  device_info info;
};

// Opens device `ordinal`: name, memory, PCI address, NUMA node, context,
// stream, VMM support and granularity, fence context.
// Errors: unsupported (no unified addressing, which copies rely on); any
// runtime failure, naming the call. A failed VMM probe is not an error: the
// device then uses linear memory (caps().export_fd says so).
// Context: may block in the runtime; allocates.
result<opened_device> open_device(std::shared_ptr<const gpu_runtime> runtime, int ordinal, bool use_vmm);

}  // namespace xbuf::gpu
