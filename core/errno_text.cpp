// SPDX-License-Identifier: MIT
#include "core/errno_text.hpp"

#include <string.h>

namespace xbuf {

namespace {

// strerror_r comes in two shapes (GNU returns a pointer, XSI fills the
// buffer); overloads pick whichever the C library declared.
[[maybe_unused]] const char* strerror_result(const char* gnu, const char*) { return gnu; }
[[maybe_unused]] const char* strerror_result(int xsi, const char* buf) {
  return xsi == 0 ? buf : "unknown error";
}

}  // namespace

std::string errno_text(int error_number) {
  char buf[128] = {};
  const char* text = strerror_result(strerror_r(error_number, buf, sizeof buf), buf);
  return std::string(text) + " (errno " + std::to_string(error_number) + ")";
}

}  // namespace xbuf
