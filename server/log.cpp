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
