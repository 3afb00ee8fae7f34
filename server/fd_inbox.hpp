// SPDX-License-Identifier: MIT
//
// fd_inbox.hpp - the file descriptors a client sent with its requests
// (SCM_RIGHTS), waiting for the request that takes them (import).
//
// Rules
//   - Bounded: a client may have at most `capacity` fds waiting; put()
//     closes what does not fit and says so (the session then closes the
//     connection: a client that sends fds nobody asked for is misbehaving,
//     and each one held is one of the daemon's descriptors).
//   - Thread-safe: the session puts on its strand, a handler takes on a
//     worker; mutex_ is a leaf.
//   - Whatever is still inside is closed with the inbox (the session's end).
#pragma once

#include <cstddef>
#include <deque>
#include <optional>

#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"
#include "server/outgoing_frame.hpp"

namespace xbuf::server {

class fd_inbox {
 public:
  static constexpr std::size_t capacity = 4;

  // False when the inbox was full (`fd` is closed then).
  bool put(unique_fd fd) XBUF_EXCLUDES(mutex_) {
    xbuf::mutex_lock lock(mutex_);
    if (fds_.size() >= capacity) return false;  // fd closes as it goes
    fds_.push_back(std::move(fd));
    return true;
  }
  // The oldest, or nothing.
  std::optional<unique_fd> take() XBUF_EXCLUDES(mutex_) {
    xbuf::mutex_lock lock(mutex_);
    if (fds_.empty()) return std::nullopt;
    unique_fd fd = std::move(fds_.front());
    fds_.pop_front();
    return fd;
  }

 private:
  xbuf::mutex mutex_;
  std::deque<unique_fd> fds_ XBUF_GUARDED_BY(mutex_);
};

}  // namespace xbuf::server
