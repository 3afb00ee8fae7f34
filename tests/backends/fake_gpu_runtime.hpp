// SPDX-License-Identifier: MIT
//
// fake_gpu_runtime.hpp - gpu_prim.hpp over host memory, for testing the GPU
// skeleton (backends/gpu/) on machines without a GPU.
//
// Overview
//   Device memory is host memory: linear allocations are aligned_alloc'd,
//   VMM allocations are memfds mapped into reserved ranges (so export/import
//   by fd really crosses mappings). memcpy_async copies at once; events
//   complete when recorded unless hold_events is set. Counters say what the
//   skeleton asked for.
#pragma once

#include <atomic>
#include <memory>

#include "backends/gpu/gpu_prim.hpp"

namespace xbuf::test {

struct fake_gpu_state {
  int devices = 2;
  bool vmm = true;
  std::atomic<bool> hold_events{false};  // events stay "running" while set
  std::atomic<bool> lost{false};         // make_current fails while set
  std::atomic<int> open_devices{0};
  std::atomic<int> live_streams{0};
  std::atomic<int> stream_waits{0};
  std::atomic<int> copies{0};
  std::atomic<int> fills{0};
  std::atomic<int> synchronizes{0};
  std::atomic<int> registered_blocks{0};
  std::atomic<int> current_depth{0};     // make_current minus restore_current
};

std::shared_ptr<const gpu::gpu_runtime> make_fake_gpu_runtime(std::shared_ptr<fake_gpu_state> state);

}  // namespace xbuf::test
