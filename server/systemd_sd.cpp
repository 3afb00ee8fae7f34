// SPDX-License-Identifier: MIT
// systemd.hpp over libsystemd's sd-daemon calls.
#include <sys/socket.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>

#include <cstddef>
#include <cstring>
#include <string>
#include <utility>

#include "core/errno_text.hpp"
#include "server/systemd.hpp"

namespace xbuf::server {

result<std::optional<activated_socket>> take_activated_socket() {
  const int n = sd_listen_fds(1);
  if (n < 0) return fail(errc::invalid_argument, "LISTEN_FDS: " + errno_text(-n));
  if (n == 0) return std::optional<activated_socket>();
  if (n != 1) {
    return fail(errc::invalid_argument,
                "LISTEN_FDS: systemd passed " + std::to_string(n) +
                    " sockets; xbufd serves exactly one (one ListenStream=)");
  }
  const int fd = SD_LISTEN_FDS_START;
  const int is = sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0);
  if (is < 0) return fail(errc::invalid_argument, "LISTEN_FDS: fd 3: " + errno_text(-is));
  if (is == 0) {
    return fail(errc::invalid_argument,
                "LISTEN_FDS: fd 3 is not a listening Unix stream socket (ListenStream=PATH)");
  }
  activated_socket s;
  s.fd = fd;
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0 &&
      len > offsetof(sockaddr_un, sun_path) && addr.sun_path[0] != '\0') {
    s.path.assign(addr.sun_path, ::strnlen(addr.sun_path, sizeof addr.sun_path));
  }
  return std::optional<activated_socket>(std::move(s));
}

void notify_ready(const std::string& status) noexcept {
  const std::string state = "READY=1\nSTATUS=" + status;
  (void)sd_notify(0, state.c_str());
}

void notify_stopping() noexcept {
  (void)sd_notify(0, "STOPPING=1");
}

}  // namespace xbuf::server
