// SPDX-License-Identifier: MIT
//
// errno_text.hpp - one way to put an errno into an error message.
//
// Rules
//   - Thread-safe (strerror_r, not strerror) and never fails.
//   - The format is "<strerror text> (errno N)": a person reads the text, a
//     bug report keeps the number.
#pragma once

#include <string>

namespace xbuf {

// "No such file or directory (errno 2)". Context: allocates; never fails.
std::string errno_text(int error_number);

}  // namespace xbuf
