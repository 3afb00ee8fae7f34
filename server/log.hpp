// SPDX-License-Identifier: MIT
//
// log.hpp - xbufd's diagnostic lines on stderr ("xbufd: client 3 connected ...").
//
// Rules
//   - One line per call, prefixed "xbufd: "; nothing when --quiet.
//   - Context: any thread; may allocate (stdio); never blocks on xbuf locks.
#pragma once

namespace xbuf::server {

class logger {
 public:
  explicit logger(bool enabled) noexcept : enabled_(enabled) {}

  // printf-style; the compiler checks the arguments against `fmt`.
  __attribute__((format(printf, 2, 3))) void operator()(const char* fmt, ...) const;

 private:
  const bool enabled_;
};

}  // namespace xbuf::server
