// SPDX-License-Identifier: MIT
#include "backends/gpu/runtime_library.hpp"

namespace xbuf::gpu {

result<runtime_library> open_runtime_library(std::span<const std::string> names, std::string_view absent_means) {
  std::string why;
  for (const auto& name : names) {
    if (void* h = ::dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE)) return runtime_library{h, name};
    const char* e = ::dlerror();
    if (why.empty() && e != nullptr) why = e;
  }
  return fail(errc::no_device, names.front() + " not found: " + std::string(absent_means) + " (dlopen: " +
                                   (why.empty() ? "unknown error" : why) + ")");
}

error missing_entry_point(const runtime_library& lib, std::string_view symbol, std::string_view hint) {
  return fail(errc::no_device,
              lib.name + ": entry point " + std::string(symbol) + " missing (" + std::string(hint) + ")");
}

}  // namespace xbuf::gpu
