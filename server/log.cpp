// SPDX-License-Identifier: MIT
#include "server/log.hpp"

#include <cstdarg>
#include <cstdio>

namespace xbuf::server {

void logger::operator()(const char* fmt, ...) const {
  if (!enabled_) return;
  std::va_list ap;
  va_start(ap, fmt);
  // One fprintf per piece: stderr is unbuffered, and a line from another
  // thread may land between them; that is acceptable for a log.
  std::fprintf(stderr, "xbufd: ");
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
}

}  // namespace xbuf::server

namespace xbuf::server {

bool log_limiter::allow(std::uint64_t* left_out) {
  const auto now = clock::now();
  xbuf::mutex_lock lock(mutex_);
  if (logged_once_ && now - last_ < interval_) {
    ++left_out_;
    return false;
  }
  logged_once_ = true;
  last_ = now;
  *left_out = left_out_;
  left_out_ = 0;
  return true;
}

}  // namespace xbuf::server
