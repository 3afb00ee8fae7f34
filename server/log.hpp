// SPDX-License-Identifier: MIT
//
// log.hpp - xbufd's diagnostic lines on stderr ("xbufd: client 3 connected ...").
//
// Rules
//   - One line per call, prefixed "xbufd: "; nothing when --quiet.
//   - When stderr is the systemd journal ($JOURNAL_STREAM names stderr's
//     device and inode), each line starts with its syslog priority ("<6>",
//     "<4>", "<3>"), which journald takes as the line's priority; anywhere
//     else (a terminal, a file, a pipe) lines look as they always did.
//   - Context: any thread; may allocate (stdio); never blocks on xbuf locks.
//   - A condition that can recur at the rate clients can make it recur (an
//     accept failing at the fd limit, connections refused at the connection
//     limit) goes through a log_limiter: one line per interval, with the
//     count of those left out. A log that grows at the attacker's rate is a
//     second denial of service (the issue saw 11 MB/s of one line).
#pragma once

#include <chrono>
#include <cstdarg>
#include <cstdint>

#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf::server {

// How bad a line is: syslog's numbers, as journald reads them.
enum class log_level : int { error = 3, warning = 4, info = 6 };

// "<3>" for `level` when stderr is the journal (see Rules), else "".
// Context: any thread; checks the environment and stderr once, then never
// allocates.
const char* journal_prefix(log_level level) noexcept;

class logger {
 public:
  explicit logger(bool enabled) noexcept : enabled_(enabled) {}

  // printf-style; the compiler checks the arguments against `fmt`.
  // operator() is an info line; warning() and error() say worse.
  __attribute__((format(printf, 2, 3))) void operator()(const char* fmt, ...) const;
  __attribute__((format(printf, 2, 3))) void warning(const char* fmt, ...) const;
  __attribute__((format(printf, 2, 3))) void error(const char* fmt, ...) const;

 private:
  __attribute__((format(printf, 3, 0))) void write(log_level level, const char* fmt, std::va_list ap) const;
  const bool enabled_;
};

// Lets one line about a recurring condition through per interval: the
// first occurrence at once, then the first one after each interval.
// Context: any thread; never blocks beyond its own leaf mutex.
class log_limiter {
 public:
  using clock = std::chrono::steady_clock;
  explicit log_limiter(clock::duration interval) noexcept : interval_(interval) {}

  // True when a line should be written now; then *left_out is the number of
  // occurrences since the last line that were not written (0 the first time).
  bool allow(std::uint64_t* left_out) XBUF_EXCLUDES(mutex_);

 private:
  const clock::duration interval_;
  xbuf::mutex mutex_;
  bool logged_once_ XBUF_GUARDED_BY(mutex_) = false;
  clock::time_point last_ XBUF_GUARDED_BY(mutex_){};
  std::uint64_t left_out_ XBUF_GUARDED_BY(mutex_) = 0;
};

}  // namespace xbuf::server
