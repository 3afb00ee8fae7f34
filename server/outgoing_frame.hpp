// SPDX-License-Identifier: MIT
//
// outgoing_frame.hpp - one encoded frame on its way to a client, with the
// file descriptor that travels with it (export's reply) when there is one.
//
// Ownership
//   unique_fd owns a descriptor and closes it when destroyed, so an fd that
//   never reaches the socket (the peer hung up, an exception, a dropped
//   queue) is closed rather than leaked. Move-only.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace xbuf::server {

class unique_fd {
 public:
  unique_fd() noexcept = default;
  explicit unique_fd(int fd) noexcept : fd_(fd) {}
  unique_fd(unique_fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;
  ~unique_fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Closes the descriptor now (never fails: a close error is not reportable).
  void reset() noexcept {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

struct outgoing_frame {
  std::vector<std::uint8_t> bytes;  // header + payload, as wire::encode_* made them
  unique_fd fd;                     // sent as SCM_RIGHTS with the first bytes, then closed
};

}  // namespace xbuf::server
