// SPDX-License-Identifier: MIT
//
// gpu_backend.hpp - one backend for every stream-ordered GPU runtime.
//
// Overview
//   The CUDA and HIP backends are this skeleton over their primitives
//   (gpu_prim.hpp); create_cuda_backend and create_hip_backend only load
//   their runtime and call create_gpu_backend.
//
//   Each device has one dedicated non-blocking stream; copies are
//   memcpy_async on it (unified addressing: the runtime tells host from
//   device pointers), on the source's device when the source is device
//   memory, else the destination's, else device 0. Each copy returns an
//   event fence ("<runtime>-event"): an event recorded after the copy,
//   signaled by a poller thread (event_poller.hpp).
//
//   copy() sorts its wait_for fences three ways: signaled ones (an error
//   among them fails the copy at once, through its fence), event fences of
//   this backend that are already on a stream (a GPU-side
//   stream_wait_event), and everything else, which sends the copy through
//   the deferred submitter (deferred_submitter.hpp) - copy() itself never
//   blocks.
//
//   Device memory: VMM where the device has it (exportable by fd when the
//   POSIX-fd handle type is supported), linear memory otherwise; host
//   memory: memfd, page-locked when pinned (gpu_memory.hpp).
//
// Rules
//   - Copies enqueued directly take seqnos on their stream's fence context
//     under the device's submit mutex, so seqno order is stream order. A
//     deferred copy reaches the stream later than it was numbered would be,
//     so it gets a fresh context instead of breaking that order.
//   - The GPU-side waits of a deferred copy are the ones sorted when copy()
//     was called; the job holds those fences (and so their events) until it
//     enqueues them.
//   - An asynchronous failure shows as the copy fence's error: -EIO, or
//     -ENODEV when the device was lost; a deferred copy that cannot be
//     enqueued signals its fence the same way.
//   - Blocks and fences keep the device state (context, stream, runtime)
//     alive, so they may outlive the backend. Destroying the backend runs the
//     deferred copies that are ready, cancels those still waiting
//     (-ECANCELED), waits for every stream to drain (where the device can
//     still be made current) and then stops the poller, whose last pass
//     signals what completed.
#pragma once

#include <memory>

#include "backends/backend.hpp"
#include "backends/gpu/gpu_prim.hpp"
#include "core/result.hpp"

namespace xbuf::gpu {

struct gpu_backend_config {
  // Use VMM allocations where the device supports them; false forces
  // linear memory (no fd export).
  bool use_vmm = true;
  // Map each VMM allocation for every peer the runtime lets access it, so
  // peer copies and kernels can use it directly.
  bool peer_access = true;
};

// The backend over every device `runtime` sees.
// Errors: no_device (device_count failed or found none; the runtime's
// message); unsupported (a device without unified addressing); any other
// failure opening a device, naming the call.
// Context: may block in the runtime; allocates. Ownership: the caller owns
// the backend; it shares `runtime` with its devices, blocks and fences.
result<std::unique_ptr<backend>> create_gpu_backend(std::shared_ptr<const gpu_runtime> runtime,
                                                    const gpu_backend_config& config);
// The same for a runtime that may have failed to load (its error is
// returned as is: no_device for a missing library).
result<std::unique_ptr<backend>> create_gpu_backend(result<std::shared_ptr<const gpu_runtime>> runtime,
                                                    const gpu_backend_config& config);

}  // namespace xbuf::gpu
