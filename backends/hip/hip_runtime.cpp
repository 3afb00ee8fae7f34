// SPDX-License-Identifier: MIT
#include "backends/hip/hip_runtime.hpp"

#include "backends/gpu/runtime_library.hpp"

namespace xbuf {

namespace {

// The VMM entry points with the ROCm 6 layouts, or none (has_vmm()).
void resolve_vmm(const gpu::runtime_library& lib, hip_runtime& rt) {
  bool all = true;
#define XBUF_HIP_OPTIONAL(name, ret, params) \
  gpu::resolve(lib, #name, rt.name);         \
  all = all && rt.name != nullptr;
  XBUF_HIP_VMM_FUNCTIONS(XBUF_HIP_OPTIONAL)
#undef XBUF_HIP_OPTIONAL
  if (!all) rt.hipMemCreate = nullptr;  // has_vmm() is all-or-nothing
}

result<std::shared_ptr<const hip_runtime>> load_uncached(const std::vector<std::string>& libraries) {
  auto lib = gpu::open_runtime_library(libraries, "no ROCm HIP runtime on this machine");
  if (!lib) return std::move(lib).err();
  auto rt = std::make_shared<hip_runtime>();
#define XBUF_HIP_REQUIRE(name, ret, params) \
  gpu::resolve(*lib, #name, rt->name);      \
  if (rt->name == nullptr) return gpu::missing_entry_point(*lib, #name, "not a HIP runtime?");
  XBUF_HIP_REQUIRED_FUNCTIONS(XBUF_HIP_REQUIRE)
#undef XBUF_HIP_REQUIRE

  // No hipInit(0) here: the runtime API initializes itself on first use,
  // and without a GPU hipInit only says hipErrorInvalidDevice, whereas
  // hipGetDeviceCount (the factory's first call) says hipErrorNoDevice.
  int version = 0;
  if (auto s = hip_checked(*rt).hipRuntimeGetVersion("", &version); !s) return std::move(s).err();
  rt->set_loaded(lib->name, version);

  // The VMM structures xbuf declares (hip_vmm_abi) are ROCm 6's; ROCm 5
  // exports hipMemCreate too, but with another layout (and as a beta).
  if (rt->major_version() >= 6) resolve_vmm(*lib, *rt);
  return std::shared_ptr<const hip_runtime>(std::move(rt));
}

}  // namespace

result<std::shared_ptr<const hip_runtime>> hip_runtime::load(std::vector<std::string> libraries) {
  if (libraries.empty()) libraries = {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"};
  std::string key;
  for (const auto& l : libraries) key += l + ";";
  static gpu::loaded_once<hip_runtime> loaded;
  return loaded.get(key, [&] { return load_uncached(libraries); });
}

}  // namespace xbuf
