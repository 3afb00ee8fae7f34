// SPDX-License-Identifier: MIT
// systemd.hpp for a build without libsystemd: nothing to notify, and an
// activated socket is refused rather than ignored (binding the same path
// beside it would fail in a less clear way).
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "server/systemd.hpp"

namespace xbuf::server {

result<std::optional<activated_socket>> take_activated_socket() {
  // As sd_listen_fds: the variables count only for the pid they name.
  const char* pid = std::getenv("LISTEN_PID");
  if (std::getenv("LISTEN_FDS") == nullptr || pid == nullptr || std::to_string(::getpid()) != pid) {
    return std::optional<activated_socket>();
  }
  return fail(errc::unsupported,
              "LISTEN_FDS: this xbufd was built without libsystemd: no socket activation");
}

void notify_ready(const std::string&) noexcept {}
void notify_stopping() noexcept {}

}  // namespace xbuf::server
