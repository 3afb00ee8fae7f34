// SPDX-License-Identifier: MIT
//
// deferred_frees.hpp - (internal) frees that wait for the work a GPU stream
// had queued when they were asked for.
//
// Overview
//   PyTorch frees a tensor (free(ptr, size, device, stream)) while kernels
//   that use it may still be queued on `stream`: the CPU runs ahead of the
//   GPU. Memory handed back at once could be given to another stream, or by
//   xbufd to another tenant, and be written by the old kernels. So the torch
//   entry points record an event on the stream and keep the free until it
//   completes - the rule of every stream-ordered caching allocator.
//   poll() hands back the pointers whose events completed, for the caller
//   to free; the entry points call it on every malloc and free, so memory
//   comes back at the first call after the stream got there.
//
// Rules
//   - Not locked: the torch state's mutex guards it (xbuf_c.cpp).
//   - An event that failed (the device was lost, the work faulted) counts as
//     complete: that work is over either way.
//   - The destructor runs nothing: at exit the process (or, in daemon mode,
//     its disconnect) gives the memory back.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "backends/gpu/gpu_device.hpp"
#include "core/result.hpp"

namespace xbuf::client::detail {

class deferred_frees {
 public:
  // Records an event on `stream` (the runtime's handle; null is the
  // device's default stream) of `dev` and keeps `ptr` until it completes.
  // Errors: the runtime's, naming the call; `ptr` is not kept then (the
  // caller decides: synchronize and free, or keep the memory).
  status defer(const std::shared_ptr<gpu::gpu_device>& dev, gpu::stream_t stream, void* ptr);

  // The pointers whose events completed, in the order they were deferred;
  // they are forgotten here. Never blocks.
  std::vector<void*> poll();

  std::size_t pending() const noexcept { return pending_.size(); }

  deferred_frees() = default;
  ~deferred_frees();
  deferred_frees(const deferred_frees&) = delete;
  deferred_frees& operator=(const deferred_frees&) = delete;

 private:
  struct entry {
    std::shared_ptr<gpu::gpu_device> dev;
    gpu::event_t event = nullptr;
    void* ptr = nullptr;
  };
  std::vector<entry> pending_;
};

}  // namespace xbuf::client::detail
