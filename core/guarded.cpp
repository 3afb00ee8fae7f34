// SPDX-License-Identifier: MIT
#include "core/guarded.hpp"

namespace xbuf::detail {

error boundary_error(std::string_view who, std::string_view what, std::exception_ptr e) noexcept {
  errc code = errc::io_error;
  std::string detail = "unknown exception";
  try {
    std::rethrow_exception(e);
  } catch (const std::bad_alloc&) {
    code = errc::out_of_memory;
    detail = "out of process memory";
  } catch (const std::exception& ex) {
    try {
      detail = ex.what();
    } catch (...) {
    }
  } catch (...) {
  }
  try {
    return error(code, std::string(who) + ": " + std::string(what) + ": " + detail);
  } catch (...) {
    return error(code, std::string());  // no memory even for the message
  }
}

}  // namespace xbuf::detail
