// SPDX-License-Identifier: MIT
#include "backends/cuda/cuda_driver.hpp"

#include "backends/gpu/runtime_library.hpp"

namespace xbuf {

namespace {

result<std::shared_ptr<const cuda_driver>> load_uncached(const std::string& library) {
  auto lib = gpu::open_runtime_library(std::span(&library, 1), "no NVIDIA driver on this machine");
  if (!lib) return std::move(lib).err();
  auto drv = std::make_shared<cuda_driver>();
#define XBUF_CUDA_RESOLVE_REQUIRED(name)                                                              \
  gpu::resolve(*lib, #name, drv->name);                                                               \
  if (drv->name == nullptr) return gpu::missing_entry_point(*lib, #name, "driver too old or not a CUDA driver");
  XBUF_CUDA_REQUIRED_FUNCTIONS(XBUF_CUDA_RESOLVE_REQUIRED)
#undef XBUF_CUDA_RESOLVE_REQUIRED

  // All-or-nothing: a partial VMM table would be used half-way.
  bool vmm = true;
#define XBUF_CUDA_RESOLVE_OPTIONAL(name) \
  gpu::resolve(*lib, #name, drv->name);  \
  vmm = vmm && drv->name != nullptr;
  XBUF_CUDA_VMM_FUNCTIONS(XBUF_CUDA_RESOLVE_OPTIONAL)
#undef XBUF_CUDA_RESOLVE_OPTIONAL
  if (!vmm) {
#define XBUF_CUDA_CLEAR(name) drv->name = nullptr;
    XBUF_CUDA_VMM_FUNCTIONS(XBUF_CUDA_CLEAR)
#undef XBUF_CUDA_CLEAR
  }

  const cuda_checked chk(*drv);
  if (auto s = chk.cuInit("0", 0); !s) {
    auto e = std::move(s).err();
    // cuInit reports a missing or unusable GPU in several ways (no device,
    // driver/library mismatch, stub library); all mean "no CUDA here".
    if (e.code != errc::no_device && e.code != errc::out_of_memory) e.code = errc::no_device;
    return e;
  }
  int version = 0;
  if (auto s = chk.cuDriverGetVersion("", &version); !s) return std::move(s).err();
  drv->set_loaded(library, version);
  return std::shared_ptr<const cuda_driver>(std::move(drv));
}

}  // namespace

result<std::shared_ptr<const cuda_driver>> cuda_driver::load(const std::string& library) {
  static gpu::loaded_once<cuda_driver> loaded;
  return loaded.get(library, [&] { return load_uncached(library); });
}

}  // namespace xbuf
