// SPDX-License-Identifier: MIT
//
// backend_test_util.hpp - helpers for the backend tests and their helper
// process: random fills, checksums, and passing an fd over a Unix socket.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>

#include "core/fd_message.hpp"

namespace xbuf::test {

// FNV-1a, 64 bit: any flipped or moved byte changes it.
inline std::uint64_t checksum(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = 14695981039346656037ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

inline void fill_random(void* data, std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto* p = static_cast<unsigned char*>(data);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const std::uint64_t v = rng();
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<unsigned char>(rng());
}

// What the parent asks the fd helper to do with the memory behind the fd.
struct fd_request {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  std::uint32_t kind = 0;   // memory_kind
  std::int32_t device = -1;
  std::uint64_t expect_checksum = 0;  // of the range as the parent wrote it
  std::uint64_t write_seed = 0;       // the child then fills the range with fill_random(seed)
};

struct fd_reply {
  std::int32_t ok = 0;
  char message[512] = {};
};

// Sends `msg` with `fd` attached (SCM_RIGHTS). Returns false on failure.
template <class T>
bool send_with_fd(int sock, const T& msg, int fd) {
  const fd_message m(&msg, sizeof msg, fd);
  return ::sendmsg(sock, m.header(), MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof msg);
}

// Receives a `T` and the fd attached to it (-1 if none). Returns false on failure.
template <class T>
bool receive_with_fd(int sock, T& msg, int& fd) {
  fd = -1;
  iovec iov{&msg, sizeof msg};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control;
  mh.msg_controllen = sizeof control;
  if (::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC) != static_cast<ssize_t>(sizeof msg)) return false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(&fd, CMSG_DATA(c), sizeof fd);
  }
  return true;
}

}  // namespace xbuf::test
