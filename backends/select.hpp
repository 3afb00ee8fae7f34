// SPDX-License-Identifier: MIT
//
// select.hpp - choosing the backend xbufd and libxbuf run on.
//
// Overview
//   "auto" tries CUDA, then HIP, then falls back to the sim backend (the
//   software GPU), so one binary does the right thing on an NVIDIA machine,
//   an AMD machine and a laptop. A name ("cuda", "hip", "sim") asks for one
//   backend and fails - with that backend's own reason - if it is missing.
//   GPU backends that were not built in (headers absent at configure time)
//   are reported as such, not silently skipped.
//
// Rules
//   - Nothing here aborts: a missing runtime or device is an error value
//     (explicit choice) or a note (auto), never a crash.
//   - Each backend tried and passed over leaves a note saying why
//     ("cuda: no_device: libcuda.so.1 not found: ..."), for the daemon's log
//     and `xbuf stat`.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"
#include "backends/gpu/gpu_prim.hpp"
#include "backends/sim/sim_backend.hpp"
#include "core/result.hpp"

#if XBUF_HAVE_CUDA_BACKEND
#include "backends/cuda/cuda_backend.hpp"
#endif
#if XBUF_HAVE_HIP_BACKEND
#include "backends/hip/hip_backend.hpp"
#endif

namespace xbuf {

enum class backend_choice : std::uint8_t { automatic, cuda, hip, sim };

// "auto", "cuda", "hip", "sim" (as a --backend flag takes them).
// Errors: invalid_argument naming the text and the accepted names.
result<backend_choice> parse_backend_choice(std::string_view name);
std::string_view to_string(backend_choice c) noexcept;

// Whether this build contains the backend (sim and automatic: always).
bool backend_built(backend_choice c) noexcept;

struct backend_selection_config {
  backend_choice choice = backend_choice::automatic;
  sim_config sim = make_sim_config(1, std::size_t{1} << 30);
#if XBUF_HAVE_CUDA_BACKEND
  cuda_config cuda;
#endif
#if XBUF_HAVE_HIP_BACKEND
  hip_config hip;
#endif
};

struct selected_backend {
  std::unique_ptr<backend> chosen;
  // Why each backend tried before the chosen one was passed over, in order.
  std::vector<std::string> notes;
};

// Creates the backend `config.choice` names (see Overview).
// Errors: for an explicit choice, that backend's factory error (no_device
// for a missing runtime or GPU), or unsupported when it was not built in;
// for automatic, only the sim backend's error (the GPU failures are notes).
// Context: may block for seconds (runtime initialization); allocates.
result<selected_backend> select_backend(const backend_selection_config& config);

// The GPU runtime the cuda or hip backend runs on, loaded for this process
// alone: what a client uses to import VRAM another process exported
// (backends/gpu/device_window.hpp). Errors: invalid_argument (sim, auto),
// unsupported (not built in), and the loader's (no_device without a driver).
// Context: may block (driver initialization); allocates.
result<std::shared_ptr<const gpu::gpu_runtime>> load_gpu_runtime(backend_choice c,
                                                                const backend_selection_config& config = {});

}  // namespace xbuf
