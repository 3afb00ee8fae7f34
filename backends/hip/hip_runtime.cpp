// SPDX-License-Identifier: MIT
#include "backends/hip/hip_runtime.hpp"

#include <dlfcn.h>

#include <map>
#include <mutex>

#include "backends/hip/hip_error.hpp"

namespace xbuf {

namespace {

template <class Fn>
void resolve(void* handle, const char* name, Fn& out) {
  out = reinterpret_cast<Fn>(::dlsym(handle, name));
}

}  // namespace

struct hip_runtime_loader {
  static result<std::shared_ptr<const hip_runtime>> load_uncached(const std::vector<std::string>& libraries);
};

result<std::shared_ptr<const hip_runtime>> hip_runtime_loader::load_uncached(
    const std::vector<std::string>& libraries) {
  void* handle = nullptr;
  std::string loaded_name;
  std::string why;
  for (const auto& name : libraries) {
    handle = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (handle != nullptr) {
      loaded_name = name;
      break;
    }
    const char* e = ::dlerror();
    if (why.empty() && e != nullptr) why = e;
  }
  if (handle == nullptr) {
    return fail(errc::no_device, libraries.front() + " not found: no ROCm HIP runtime on this machine (dlopen: " +
                                     (why.empty() ? "unknown error" : why) + ")");
  }
  auto rt = std::make_shared<hip_runtime>();
  const std::string lib = loaded_name;
#define XBUF_HIP_REQUIRE(name)                                                                 \
  resolve(handle, #name, rt->name);                                                            \
  if (rt->name == nullptr) {                                                                   \
    return fail(errc::no_device, lib + ": entry point " #name " missing (not a HIP runtime?)"); \
  }
  XBUF_HIP_REQUIRE(hipGetErrorName)
  XBUF_HIP_REQUIRE(hipGetErrorString)
  XBUF_HIP_REQUIRE(hipRuntimeGetVersion)
  XBUF_HIP_REQUIRE(hipGetDeviceCount)
  XBUF_HIP_REQUIRE(hipGetDevice)
  XBUF_HIP_REQUIRE(hipSetDevice)
  XBUF_HIP_REQUIRE(hipDeviceGetName)
  XBUF_HIP_REQUIRE(hipDeviceTotalMem)
  XBUF_HIP_REQUIRE(hipDeviceGetPCIBusId)
  XBUF_HIP_REQUIRE(hipDeviceGetAttribute)
  XBUF_HIP_REQUIRE(hipDeviceCanAccessPeer)
  XBUF_HIP_REQUIRE(hipStreamCreateWithFlags)
  XBUF_HIP_REQUIRE(hipStreamDestroy)
  XBUF_HIP_REQUIRE(hipStreamSynchronize)
  XBUF_HIP_REQUIRE(hipStreamWaitEvent)
  XBUF_HIP_REQUIRE(hipEventCreateWithFlags)
  XBUF_HIP_REQUIRE(hipEventDestroy)
  XBUF_HIP_REQUIRE(hipEventRecord)
  XBUF_HIP_REQUIRE(hipEventQuery)
  XBUF_HIP_REQUIRE(hipMemcpyAsync)
  XBUF_HIP_REQUIRE(hipMalloc)
  XBUF_HIP_REQUIRE(hipFree)
  XBUF_HIP_REQUIRE(hipMemGetInfo)
  XBUF_HIP_REQUIRE(hipHostRegister)
  XBUF_HIP_REQUIRE(hipHostUnregister)
#undef XBUF_HIP_REQUIRE

  // No hipInit(0) here: the runtime API initializes itself on first use,
  // and without a GPU hipInit only says hipErrorInvalidDevice, whereas
  // hipGetDeviceCount (the factory's first call) says hipErrorNoDevice.
  int version = 0;
  if (hipError_t rc = rt->hipRuntimeGetVersion(&version); rc != hipSuccess) {
    return hip_error(rt.get(), rc, "hipRuntimeGetVersion");
  }
  rt->library_ = lib;
  rt->version_ = version;

  // The VMM structures xbuf declares (hip_vmm_abi) are ROCm 6's; ROCm 5
  // exports hipMemCreate too, but with another layout (and as a beta).
  if (rt->major_version() >= 6) {
    bool all = true;
#define XBUF_HIP_OPTIONAL(name)       \
  resolve(handle, #name, rt->name);   \
  all = all && rt->name != nullptr;
    XBUF_HIP_OPTIONAL(hipMemCreate)
    XBUF_HIP_OPTIONAL(hipMemRelease)
    XBUF_HIP_OPTIONAL(hipMemAddressReserve)
    XBUF_HIP_OPTIONAL(hipMemAddressFree)
    XBUF_HIP_OPTIONAL(hipMemMap)
    XBUF_HIP_OPTIONAL(hipMemUnmap)
    XBUF_HIP_OPTIONAL(hipMemSetAccess)
    XBUF_HIP_OPTIONAL(hipMemGetAllocationGranularity)
    XBUF_HIP_OPTIONAL(hipMemExportToShareableHandle)
    XBUF_HIP_OPTIONAL(hipMemImportFromShareableHandle)
#undef XBUF_HIP_OPTIONAL
    if (!all) rt->hipMemCreate = nullptr;  // has_vmm() is all-or-nothing
  }
  return std::shared_ptr<const hip_runtime>(std::move(rt));
}

result<std::shared_ptr<const hip_runtime>> hip_runtime::load(std::vector<std::string> libraries) {
  if (libraries.empty()) libraries = {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"};
  std::string key;
  for (const auto& l : libraries) key += l + ";";
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const hip_runtime>> loaded;
  std::lock_guard lock(mutex);
  if (auto it = loaded.find(key); it != loaded.end()) return it->second;
  auto rt = hip_runtime_loader::load_uncached(libraries);
  if (rt) loaded.emplace(key, *rt);
  return rt;
}

}  // namespace xbuf
