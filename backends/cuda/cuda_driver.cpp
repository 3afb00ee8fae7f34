// SPDX-License-Identifier: MIT
#include "backends/cuda/cuda_driver.hpp"

#include <dlfcn.h>

#include <map>
#include <mutex>

#include "backends/cuda/cuda_error.hpp"

namespace xbuf {

namespace {

// dlsym returns an object pointer; POSIX guarantees it converts to a function
// pointer. reinterpret_cast says so without -Wold-style-cast complaints.
template <class Fn>
void resolve(void* handle, const char* name, Fn& out) {
  out = reinterpret_cast<Fn>(::dlsym(handle, name));
}

}  // namespace

struct cuda_driver_loader {
  static result<std::shared_ptr<const cuda_driver>> load_uncached(const std::string& library);
};

result<std::shared_ptr<const cuda_driver>> cuda_driver_loader::load_uncached(const std::string& library) {
  // RTLD_NODELETE: see "never dlclose()d" in the header; RTLD_LOCAL keeps
  // libcuda's symbols out of the global namespace.
  void* handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    return fail(errc::no_device, library + " not found: no NVIDIA driver on this machine (dlopen: " +
                                     (why != nullptr ? why : "unknown error") + ")");
  }
  auto drv = std::make_shared<cuda_driver>();
#define XBUF_CUDA_RESOLVE_REQUIRED(name)                                                              \
  resolve(handle, #name, drv->name);                                                                  \
  if (drv->name == nullptr) {                                                                         \
    return fail(errc::no_device,                                                                      \
                library + ": entry point " #name " missing (driver too old or not a CUDA driver)"); \
  }
  XBUF_CUDA_REQUIRED_FUNCTIONS(XBUF_CUDA_RESOLVE_REQUIRED)
#undef XBUF_CUDA_RESOLVE_REQUIRED

  // All-or-nothing: a partial VMM table would be used half-way.
  bool vmm = true;
#define XBUF_CUDA_RESOLVE_OPTIONAL(name) \
  resolve(handle, #name, drv->name);     \
  vmm = vmm && drv->name != nullptr;
  XBUF_CUDA_VMM_FUNCTIONS(XBUF_CUDA_RESOLVE_OPTIONAL)
#undef XBUF_CUDA_RESOLVE_OPTIONAL
  if (!vmm) {
#define XBUF_CUDA_CLEAR(name) drv->name = nullptr;
    XBUF_CUDA_VMM_FUNCTIONS(XBUF_CUDA_CLEAR)
#undef XBUF_CUDA_CLEAR
  }

  if (CUresult rc = drv->cuInit(0); rc != CUDA_SUCCESS) {
    auto e = cuda_error(drv.get(), rc, "cuInit(0)");
    // cuInit reports a missing or unusable GPU in several ways (no device,
    // driver/library mismatch, stub library); all mean "no CUDA here".
    if (e.code != errc::no_device && e.code != errc::out_of_memory) e.code = errc::no_device;
    return e;
  }
  int version = 0;
  if (CUresult rc = drv->cuDriverGetVersion(&version); rc != CUDA_SUCCESS) {
    return cuda_error(drv.get(), rc, "cuDriverGetVersion");
  }
  drv->library_ = library;
  drv->version_ = version;
  return std::shared_ptr<const cuda_driver>(std::move(drv));
}

result<std::shared_ptr<const cuda_driver>> cuda_driver::load(const std::string& library) {
  // Loaded once per library name; a failure is not cached, so a driver that
  // appears later (or a transient cuInit failure) can still be picked up.
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const cuda_driver>> loaded;
  std::lock_guard lock(mutex);
  if (auto it = loaded.find(library); it != loaded.end()) return it->second;
  auto drv = cuda_driver_loader::load_uncached(library);
  if (drv) loaded.emplace(library, *drv);
  return drv;
}

}  // namespace xbuf
