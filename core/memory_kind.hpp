// SPDX-License-Identifier: MIT
//
// memory_kind.hpp - the three kinds of memory a buffer can live in.
//
// Rules
//   - Values only. The numbers travel on the wire (server/protocol.hpp takes
//     its range from memory_kind_last), so new kinds go at the end.
#pragma once

#include <cstdint>
#include <string_view>

namespace xbuf {

enum class memory_kind : std::uint8_t {
  device,         // a GPU's VRAM
  host_pinned,    // page-locked system memory, registered with the GPU runtime when one is present
  host_pageable,  // ordinary system memory
};
// The last enumerator, for range checks of decoded values.
inline constexpr memory_kind memory_kind_last = memory_kind::host_pageable;

// "device", "host_pinned", "host_pageable". Context: pure.
std::string_view to_string(memory_kind k) noexcept;

}  // namespace xbuf
