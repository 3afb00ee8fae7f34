// SPDX-License-Identifier: MIT
//
// embedded_allocator.hpp - (internal) the embedded allocator over a backend
// the caller made.
//
// open_embedded() (allocator.hpp) selects a backend by name; this takes one
// ready-made, with the runtime to map its VRAM with in this process - what
// the tests use to run the embedded allocator over the fake GPU runtime
// (tests/backends/fake_gpu_runtime.hpp), so the device_window paths of
// mapping_allocator run without a GPU.
#pragma once

#include <memory>

#include "allocator/memory_manager.hpp"
#include "backends/backend.hpp"
#include "backends/gpu/gpu_prim.hpp"
#include "client/allocator.hpp"

namespace xbuf::client {

// `mc.device_backend` is set to `b`, which the allocator owns.
// local_runtime: maps the backend's VRAM exports (null: the runtime the
// backend's name says, loaded on first use; none for the sim).
// Errors: memory_manager::create's.
result<std::unique_ptr<allocator>> open_embedded_over(std::unique_ptr<backend> b, manager_config mc,
                                                     std::shared_ptr<const gpu::gpu_runtime> local_runtime);

}  // namespace xbuf::client
