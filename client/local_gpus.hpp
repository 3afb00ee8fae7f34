// SPDX-License-Identifier: MIT
//
// local_gpus.hpp - (internal) this process's own GPU devices, for mapping
// VRAM that the memory manager exported (DESIGN.md, "Client mappings").
//
// Overview
//   A VRAM export of a GPU runtime (xbufd on CUDA or HIP) is an fd of a VMM
//   allocation: the client imports it into a device range of its own
//   (backends/gpu/device_window.hpp) on its own device of the same index.
//   A VRAM export of the sim is a memory file, mapped like host memory.
//   for_backend() tells the two apart by the exporting backend's name and,
//   for a GPU runtime, loads that runtime in this process (once) and opens
//   the device (once per index).
//
//   Device indices are the exporter's: the client's runtime must number the
//   GPUs the same way (the same CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES
//   as xbufd, which is what one job on one node has).
//
// Rules
//   - Thread-safe (one leaf mutex); the first call per device may block in
//     the driver (initialization, context creation).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "backends/gpu/gpu_device.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf::client::detail {

class local_gpus {
 public:
  // `runtime`: the one to open devices on (tests pass the fake runtime);
  // null: the one the exporting backend names, loaded on first use.
  explicit local_gpus(std::shared_ptr<const gpu::gpu_runtime> runtime = nullptr) : runtime_(std::move(runtime)) {}

  // This process's device `index` for VRAM exported by backend `backend`
  // ("cuda", "hip"; the runtime's name), or null when that backend's VRAM
  // exports are memory files ("sim", "host").
  // Errors: unsupported (a runtime this build lacks), no_device (no driver
  // or no such device here), and the runtime's, naming the call.
  result<std::shared_ptr<gpu::gpu_device>> for_backend(std::string_view backend, int index);

 private:
  xbuf::mutex mutex_;
  std::shared_ptr<const gpu::gpu_runtime> runtime_ XBUF_GUARDED_BY(mutex_);
  std::optional<error> load_failed_ XBUF_GUARDED_BY(mutex_);  // why loading failed, said again
  std::map<int, std::shared_ptr<gpu::gpu_device>> devices_ XBUF_GUARDED_BY(mutex_);
};

}  // namespace xbuf::client::detail
