// SPDX-License-Identifier: MIT
#include "tests/backends/backend_factories.hpp"

#include "backends/host/host_backend.hpp"
#include "backends/sim/sim_backend.hpp"
#if XBUF_TEST_WITH_CUDA
#include "backends/cuda/cuda_backend.hpp"
#endif
#if XBUF_TEST_WITH_HIP
#include "backends/hip/hip_backend.hpp"
#endif

namespace xbuf::test {

namespace {

// Pinned test allocations are small, but a CI runner's RLIMIT_MEMLOCK may be
// 64 KiB: fall back to unlocked memory there rather than fail unrelated cases
// (the strict path is tested in host_backend_test).
host_config conformance_host_config(std::string name) {
  host_config h;
  h.name = std::move(name);
  h.pinned_fallback_unlocked = true;
  return h;
}

sim_config conformance_sim_config() {
  sim_config c = make_sim_config(2, std::size_t{64} << 20);
  c.devices[0].pci_address = "0000:3b:00.0";
  c.devices[1].pci_address = "0000:5e:00.0";
  c.host = conformance_host_config("sim host");
  return c;
}

}  // namespace

const std::vector<named_backend_factory>& backend_factories() {
  static const std::vector<named_backend_factory> list = {
      {"sim", [] { return as_backend(create_sim_backend(conformance_sim_config())); }},
      {"host", [] { return as_backend(create_host_backend(conformance_host_config("host"))); }},
#if XBUF_TEST_WITH_CUDA
      {"cuda", [] { return create_cuda_backend({}); }},
#endif
#if XBUF_TEST_WITH_HIP
      {"hip", [] { return create_hip_backend({}); }},
#endif
  };
  return list;
}

std::vector<std::string> backend_factory_names() {
  std::vector<std::string> names;
  for (const auto& f : backend_factories()) names.push_back(f.name);
  return names;
}

std::vector<std::string> gpu_backend_names() {
  std::vector<std::string> names;
  for (const auto& f : backend_factories()) {
    if (f.name == "cuda" || f.name == "hip") names.push_back(f.name);
  }
  return names;
}

result<std::unique_ptr<backend>> create_test_backend(std::string_view name) {
  for (const auto& f : backend_factories()) {
    if (f.name == name) return f.create();
  }
  return fail(errc::not_found, "no test backend named " + std::string(name));
}

}  // namespace xbuf::test
