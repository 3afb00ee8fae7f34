// SPDX-License-Identifier: MIT
#include "allocator/domain.hpp"

namespace xbuf {

std::string to_string(const placement& p) {
  switch (p.kind) {
    case memory_kind::device: return "vram" + std::to_string(p.device);
    case memory_kind::host_pinned: return "pinned";
    case memory_kind::host_pageable: return p.node < 0 ? "pageable" : "pageable-node" + std::to_string(p.node);
  }
  return "unknown";
}

}  // namespace xbuf
