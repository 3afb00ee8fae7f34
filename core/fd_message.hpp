// SPDX-License-Identifier: MIT
//
// fd_message.hpp - a sendmsg() message: some bytes with one file
// descriptor riding on them as SCM_RIGHTS (an export's reply, an import's
// request, a test's helper process).
//
// Rules
//   - The message points into itself and at the caller's bytes: it is
//     neither copied nor moved, and the bytes outlive it.
//   - The fd is not taken: sendmsg() gives the peer its own copy.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstring>

namespace xbuf {

class fd_message {
 public:
  fd_message(const void* bytes, std::size_t n, int fd) noexcept {
    iov_.iov_base = const_cast<void*>(bytes);  // sendmsg only reads it
    iov_.iov_len = n;
    msg_.msg_iov = &iov_;
    msg_.msg_iovlen = 1;
    msg_.msg_control = control_;
    msg_.msg_controllen = sizeof control_;
    cmsghdr* c = CMSG_FIRSTHDR(&msg_);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  fd_message(const fd_message&) = delete;
  fd_message& operator=(const fd_message&) = delete;

  const msghdr* header() const noexcept { return &msg_; }

 private:
  iovec iov_{};
  alignas(cmsghdr) char control_[CMSG_SPACE(sizeof(int))]{};
  msghdr msg_{};
};

}  // namespace xbuf
