// SPDX-License-Identifier: MIT
#include "server/listener.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstring>
#include <string>

#include "core/errno_text.hpp"
#include "server/session.hpp"

namespace xbuf::server {

namespace {

// An existing file at the path: a stale socket is removed; anything else
// is an error (another daemon, or a file that is not ours to delete).
status clear_stale_socket(const std::string& path, const sockaddr* sa, socklen_t len) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return ok();
  if (!S_ISSOCK(st.st_mode)) {
    return fail(errc::already_exists, "socket path '" + path + "': exists and is not a socket");
  }
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    const bool live = ::connect(probe, sa, len) == 0;
    ::close(probe);
    if (live) return fail(errc::already_exists, "socket path '" + path + "': another xbufd is listening");
  }
  ::unlink(path.c_str());  // stale: its daemon is gone
  return ok();
}

}  // namespace

result<int> bind_listener(const server_config& cfg) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (cfg.socket_path.empty() || cfg.socket_path.size() >= sizeof addr.sun_path) {
    return fail(errc::invalid_argument, "socket path '" + cfg.socket_path + "': empty or longer than " +
                                            std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, cfg.socket_path.c_str(), cfg.socket_path.size() + 1);
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
  if (auto s = clear_stale_socket(cfg.socket_path, sa, sizeof addr); !s) return std::move(s).err();

  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(errc::io_error, "socket(): " + errno_text(errno));
  if (::bind(fd, sa, sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(errc::io_error, "bind '" + cfg.socket_path + "': " + errno_text(e));
  }
  if (::chmod(cfg.socket_path.c_str(), cfg.socket_mode) != 0 || ::listen(fd, 64) != 0) {
    const int e = errno;
    ::close(fd);
    ::unlink(cfg.socket_path.c_str());
    return fail(errc::io_error, "chmod/listen '" + cfg.socket_path + "': " + errno_text(e));
  }
  return fd;
}

asio::awaitable<void> accept_loop(server_state& srv, asio::local::stream_protocol::acceptor& acceptor) {
  constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(asio::make_strand(srv.ioc), tuple_awaitable);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      srv.log("accept: %s", ec.message().c_str());
      continue;
    }
    start_session(srv, std::move(sock), srv.next_owner.fetch_add(1));
  }
}

}  // namespace xbuf::server
