// SPDX-License-Identifier: MIT
//
// runtime_error.hpp - a runtime's result code as an xbuf::error, written once.
//
// Overview
//   Both runtimes report errors the same way: "call: NAME (description)",
//   where NAME and description come from the runtime when it is loaded and
//   from a built-in table otherwise (so errors read the same in tests without
//   a GPU). Each runtime supplies only its table and its code mapping
//   (cuda_error.cpp, hip_error.cpp); the formatting and the fence errno are
//   here.
//
// Rules
//   - Pure functions: thread-safe, no allocation beyond the message.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace xbuf::gpu {

// One result code of a runtime: what the caller can do about it (code)
// and how it reads without the runtime loaded.
struct known_code {
  int value;
  errc code;
  const char* name;
  const char* text;
};

const known_code* find_known(std::span<const known_code> table, int value) noexcept;

// "call: name (text)" with `code`. name: the runtime's name for the code,
// else the table's, else `fallback_name`; text likewise, else
// `unknown_text`. A text equal to the name (ROCm 5's hipGetErrorString
// returns the name) counts as none. A code of errc::ok (an "error" that
// succeeded: misuse) becomes io_error.
struct runtime_error_parts {
  errc code = errc::io_error;
  int value = 0;
  std::string runtime_name;  // "" when no runtime is loaded or it did not know
  std::string runtime_text;
  std::string fallback_name;
  std::string_view unknown_text;
};
error make_runtime_error(std::span<const known_code> table, runtime_error_parts parts, std::string_view call);

// The negative errno a fence carries when its work failed with `code`:
// -ENODEV when the device is gone (device_lost, no_device), -EIO otherwise;
// 0 for errc::ok.
int fence_errno(errc code) noexcept;

// One runtime's result codes: its table (one row per code it can meet,
// with the errc that says what the caller can do: out of memory -> evict
// and retry; no device -> pick another backend; a sticky fault -> the
// device is lost), and how it names codes the table lacks
// ("CUDA_ERROR_12345", "hipError4242"; their errc is io_error).
template <class Code>
struct runtime_codes {
  std::span<const known_code> table;
  Code success;
  std::string_view success_name;    // "CUDA_SUCCESS"
  std::string_view unknown_prefix;  // "CUDA_ERROR_": followed by the number
  std::string_view unknown_text;    // "unrecognized CUDA error"

  // errc::ok for success.
  errc code(Code rc) const noexcept {
    if (rc == success) return errc::ok;
    const auto* k = find_known(table, static_cast<int>(rc));
    return k != nullptr ? k->code : errc::io_error;
  }
  std::string name(Code rc) const {
    if (rc == success) return std::string(success_name);
    if (const auto* k = find_known(table, static_cast<int>(rc))) return k->name;
    return std::string(unknown_prefix) + std::to_string(static_cast<int>(rc));
  }
  // "call: NAME (text)" with code(rc). runtime_name/runtime_text: what the
  // loaded runtime says ("" if none). Precondition: rc != success.
  error make(Code rc, std::string runtime_name, std::string runtime_text, std::string_view call) const {
    runtime_error_parts parts;
    parts.code = code(rc);
    parts.value = static_cast<int>(rc);
    parts.runtime_name = std::move(runtime_name);
    parts.runtime_text = std::move(runtime_text);
    parts.fallback_name = name(rc);
    parts.unknown_text = unknown_text;
    return make_runtime_error(table, std::move(parts), call);
  }
  // The negative errno a fence carries when the work behind it failed with rc.
  int fence_errno_of(Code rc) const noexcept { return fence_errno(code(rc)); }
};

}  // namespace xbuf::gpu
