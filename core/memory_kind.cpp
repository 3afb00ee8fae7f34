// SPDX-License-Identifier: MIT
#include "core/memory_kind.hpp"

namespace xbuf {

std::string_view to_string(memory_kind k) noexcept {
  switch (k) {
    case memory_kind::device: return "device";
    case memory_kind::host_pinned: return "host_pinned";
    case memory_kind::host_pageable: return "host_pageable";
  }
  return "unknown";
}

}  // namespace xbuf
