// SPDX-License-Identifier: MIT
//
// manager_names.hpp - how the memory manager's files name objects in errors.
//
// Internal to allocator/: one spelling of "buffer 7", of the not-found
// errors and of a placement list, shared by the manager's files.
#pragma once

#include <string>
#include <vector>

#include "allocator/buffer.hpp"
#include "allocator/domain.hpp"
#include "core/result.hpp"

namespace xbuf::detail {

inline std::string buffer_name(buffer_id id) { return "buffer " + std::to_string(id); }
inline std::string attachment_name(attachment_id id) { return "attachment " + std::to_string(id); }

inline error unknown_buffer(owner_id owner, buffer_id id) {
  return fail(errc::not_found,
              buffer_name(id) + ": no such buffer for owner " + std::to_string(owner));
}
inline error unknown_attachment(owner_id owner, attachment_id id) {
  return fail(errc::not_found,
              attachment_name(id) + ": no such attachment for owner " + std::to_string(owner));
}
inline error gone(buffer_id id) { return fail(errc::not_found, buffer_name(id) + ": freed meanwhile"); }
inline error contents_lost(buffer_id id) {
  return fail(errc::device_lost, buffer_name(id) + ": a move failed and its contents are lost");
}

// "vram0,pinned"
inline std::string placements_text(const std::vector<placement>& ps) {
  std::string s;
  for (const auto& p : ps) s += (s.empty() ? "" : ",") + to_string(p);
  return s;
}

}  // namespace xbuf::detail
