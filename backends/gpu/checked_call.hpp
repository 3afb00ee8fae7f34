// SPDX-License-Identifier: MIT
//
// checked_call.hpp - every runtime call's result checked in one place.
//
// Overview
//   A runtime's function table (cuda_driver.hpp, hip_runtime.hpp) is an
//   X-macro list. Expanding XBUF_GPU_CHECKED_CALL over that list in a
//   checked_calls subclass gives one member per entry point, same name, that
//   takes a description of the arguments first and returns a status:
//
//     chk.cuMemCreate(on_device(d, size), &handle, size, &prop, 0)
//       -> ok, or "cuMemCreate(device 1, 4096 bytes): CUDA_ERROR_OUT_OF_MEMORY (out of memory)"
//
//   so no call site compares a result code by hand, and every message names
//   its call the same way. A versioned symbol is named as the API documents
//   it ("cuMemAlloc_v2" -> "cuMemAlloc").
//
// Rules
//   - Stateless apart from the table reference: as thread-safe as the table.
//   - The table must outlive the checked_calls object.
#pragma once

#include <string>
#include <string_view>

#include "core/result.hpp"

namespace xbuf::gpu {

// "cuMemAlloc_v2" -> "cuMemAlloc".
constexpr std::string_view documented_name(std::string_view symbol) noexcept {
  const auto v = symbol.rfind("_v");
  return v != std::string_view::npos && v + 2 < symbol.size() ? symbol.substr(0, v) : symbol;
}

// Table: the function table; Code: its result type; success: the "no error"
// value; to_error: the runtime's mapping (cuda_error, hip_error).
template <class Table, class Code, Code success, error (*to_error)(const Table*, Code, std::string_view)>
class checked_calls {
 public:
  explicit checked_calls(const Table& table) noexcept : table_(table) {}
  const Table& table() const noexcept { return table_; }

 protected:
  // "name(args)" or "name" when args is empty.
  status check(Code rc, std::string_view symbol, std::string_view args) const {
    if (rc == success) return {};
    std::string call(documented_name(symbol));
    if (!args.empty()) call += "(" + std::string(args) + ")";
    return to_error(&table_, rc, call);
  }

 private:
  const Table& table_;
};

}  // namespace xbuf::gpu

// One checked member per X-macro entry: name(args_description, call arguments...).
#define XBUF_GPU_CHECKED_CALL(name)                                       \
  template <class... Args>                                                \
  ::xbuf::status name(std::string_view args, Args... call_args) const {   \
    return this->check(this->table().name(call_args...), #name, args);    \
  }
