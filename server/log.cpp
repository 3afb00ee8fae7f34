// SPDX-License-Identifier: MIT
#include "server/log.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>

namespace xbuf::server {

namespace {

// $JOURNAL_STREAM is "DEVICE:INODE" of the stream systemd connected to the
// journal; it is inherited, so it only counts while stderr is that stream.
bool stderr_is_journal() noexcept {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace

const char* journal_prefix(log_level level) noexcept {
  static const bool journal = stderr_is_journal();
  if (!journal) return "";
  switch (level) {
    case log_level::error:
      return "<3>";
    case log_level::warning:
      return "<4>";
    case log_level::info:
      return "<6>";
  }
  return "";
}

void logger::write(log_level level, const char* fmt, std::va_list ap) const {
  if (!enabled_) return;
  // One fprintf per piece: stderr is unbuffered, and a line from another
  // thread may land between them; that is acceptable for a log.
  std::fprintf(stderr, "%sxbufd: ", journal_prefix(level));
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
}

void logger::operator()(const char* fmt, ...) const {
  std::va_list ap;
  va_start(ap, fmt);
  write(log_level::info, fmt, ap);
  va_end(ap);
}

void logger::warning(const char* fmt, ...) const {
  std::va_list ap;
  va_start(ap, fmt);
  write(log_level::warning, fmt, ap);
  va_end(ap);
}

void logger::error(const char* fmt, ...) const {
  std::va_list ap;
  va_start(ap, fmt);
  write(log_level::error, fmt, ap);
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
