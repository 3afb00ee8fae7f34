// SPDX-License-Identifier: MIT
#include "backends/select.hpp"

#if XBUF_HAVE_CUDA_BACKEND
#include "backends/cuda/cuda_prims.hpp"
#endif
#if XBUF_HAVE_HIP_BACKEND
#include "backends/hip/hip_prims.hpp"
#endif

namespace xbuf {

namespace {

template <class Ptr>
result<std::unique_ptr<backend>> widen(result<Ptr> r) {
  if (!r) return std::move(r).err();
  return std::unique_ptr<backend>(std::move(r).value());
}

[[maybe_unused]] error not_built(backend_choice c) {
  return fail(errc::unsupported, std::string(to_string(c)) +
                                     " backend not built into this xbuf (its headers were not found at configure time)");
}

result<std::unique_ptr<backend>> create_one(backend_choice c, const backend_selection_config& config) {
  switch (c) {
    case backend_choice::cuda:
#if XBUF_HAVE_CUDA_BACKEND
      return widen(create_cuda_backend(config.cuda));
#else
      return not_built(c);
#endif
    case backend_choice::hip:
#if XBUF_HAVE_HIP_BACKEND
      return widen(create_hip_backend(config.hip));
#else
      return not_built(c);
#endif
    case backend_choice::sim:
      return widen(create_sim_backend(config.sim));
    case backend_choice::automatic:
      break;
  }
  return fail(errc::invalid_argument, "select_backend: 'auto' is not a single backend");
}

}  // namespace

result<backend_choice> parse_backend_choice(std::string_view name) {
  if (name == "auto") return backend_choice::automatic;
  if (name == "cuda") return backend_choice::cuda;
  if (name == "hip") return backend_choice::hip;
  if (name == "sim") return backend_choice::sim;
  return fail(errc::invalid_argument,
              "unknown backend '" + std::string(name) + "': expected auto, cuda, hip or sim");
}

std::string_view to_string(backend_choice c) noexcept {
  switch (c) {
    case backend_choice::automatic: return "auto";
    case backend_choice::cuda: return "cuda";
    case backend_choice::hip: return "hip";
    case backend_choice::sim: return "sim";
  }
  return "unknown";
}

bool backend_built(backend_choice c) noexcept {
  switch (c) {
    case backend_choice::cuda:
#if XBUF_HAVE_CUDA_BACKEND
      return true;
#else
      return false;
#endif
    case backend_choice::hip:
#if XBUF_HAVE_HIP_BACKEND
      return true;
#else
      return false;
#endif
    case backend_choice::sim:
    case backend_choice::automatic: return true;
  }
  return false;
}

result<std::shared_ptr<const gpu::gpu_runtime>> load_gpu_runtime(backend_choice c,
                                                                const backend_selection_config& config) {
  switch (c) {
    case backend_choice::cuda:
#if XBUF_HAVE_CUDA_BACKEND
      return load_cuda_runtime(config.cuda.library);
#else
      return not_built(c);
#endif
    case backend_choice::hip:
#if XBUF_HAVE_HIP_BACKEND
      return load_hip_runtime(config.hip.libraries);
#else
      return not_built(c);
#endif
    case backend_choice::sim:
    case backend_choice::automatic:
      break;
  }
  return fail(errc::invalid_argument,
              "load_gpu_runtime: '" + std::string(to_string(c)) + "' names no GPU runtime");
}

result<selected_backend> select_backend(const backend_selection_config& config) {
  selected_backend out;
  if (config.choice != backend_choice::automatic) {
    auto b = create_one(config.choice, config);
    if (!b) return std::move(b).err();
    out.chosen = std::move(*b);
    return out;
  }
  for (auto c : {backend_choice::cuda, backend_choice::hip}) {
    auto b = create_one(c, config);
    if (b) {
      out.chosen = std::move(*b);
      return out;
    }
    out.notes.push_back(std::string(to_string(c)) + ": " + b.err().describe());
  }
  auto sim = create_one(backend_choice::sim, config);
  if (!sim) return sim.err().prefixed("no GPU backend usable and the sim backend failed");
  out.chosen = std::move(*sim);
  return out;
}

}  // namespace xbuf
