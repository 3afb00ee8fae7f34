// SPDX-License-Identifier: MIT
#include "backends/gpu/runtime_error.hpp"

#include <cerrno>

namespace xbuf::gpu {

const known_code* find_known(std::span<const known_code> table, int value) noexcept {
  for (const auto& k : table) {
    if (k.value == value) return &k;
  }
  return nullptr;
}

error make_runtime_error(std::span<const known_code> table, runtime_error_parts parts, std::string_view call) {
  const known_code* k = find_known(table, parts.value);
  std::string name = std::move(parts.runtime_name);
  std::string text = std::move(parts.runtime_text);
  if (name.empty()) name = k != nullptr ? std::string(k->name) : parts.fallback_name;
  if (text == name) text.clear();
  if (text.empty()) text = k != nullptr ? std::string(k->text) : std::string(parts.unknown_text);
  const errc code = parts.code == errc::ok ? errc::io_error : parts.code;
  return fail(code, std::string(call) + ": " + name + " (" + text + ")");
}

int fence_errno(errc code) noexcept {
  if (code == errc::ok) return 0;
  // A copy that the device could not finish is an I/O error for the fence
  // unless the device itself is gone.
  return code == errc::device_lost || code == errc::no_device ? -ENODEV : -EIO;
}

}  // namespace xbuf::gpu
