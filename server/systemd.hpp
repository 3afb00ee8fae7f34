// SPDX-License-Identifier: MIT
//
// systemd.hpp - what xbufd does differently under systemd: take the socket
// that a .socket unit made (socket activation) and tell the service manager
// when it is ready and when it stops (packaging/systemd/).
//
// Overview
//   Two implementations, chosen at configure time (server/CMakeLists.txt):
//   systemd_sd.cpp over libsystemd's sd-daemon calls, and systemd_none.cpp
//   for a build without libsystemd, where there is nothing to notify and an
//   activated socket is refused with a reason. Neither changes anything when
//   systemd did not start xbufd: no $LISTEN_FDS for this pid, no
//   $NOTIFY_SOCKET.
//
// Rules
//   - take_activated_socket() is called once, before any thread starts (it
//     unsets $LISTEN_FDS / $LISTEN_PID so nothing inherits them).
//   - The notify calls never fail: a manager that is gone is not the
//     daemon's problem.
#pragma once

#include <optional>
#include <string>

#include "core/result.hpp"

namespace xbuf::server {

// A listening socket that systemd passed in, and the path it is bound to.
struct activated_socket {
  int fd = -1;       // owned by the caller; close-on-exec
  std::string path;  // from getsockname; "" if the socket has no path
};

// The socket systemd passed ($LISTEN_FDS = 1, $LISTEN_PID = this pid), or
// nothing when xbufd was not socket-activated.
// Errors: invalid_argument when more than one fd was passed or fd 3 is not
// a listening Unix stream socket; unsupported in a build without libsystemd
// when $LISTEN_FDS is set.
// Context: once, single-threaded, at start-up.
result<std::optional<activated_socket>> take_activated_socket();

// READY=1 (with STATUS=`status`), once the socket accepts.
// Context: any thread; a datagram to $NOTIFY_SOCKET or nothing; never fails.
void notify_ready(const std::string& status) noexcept;
// STOPPING=1, when shutdown begins. Same context.
void notify_stopping() noexcept;

}  // namespace xbuf::server
