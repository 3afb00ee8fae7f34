// SPDX-License-Identifier: MIT
#include "server/listener.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "core/errno_text.hpp"
#include "server/protocol.hpp"
#include "server/session.hpp"

namespace xbuf::server {

namespace {

std::string octal(unsigned mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode & 07777u);
  return buf;
}

std::string parent_of(const std::string& path) {
  const auto slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// The directory decides who else could create or replace the socket file:
// anyone who can write it. See the Rules in listener.hpp.
status check_socket_directory(const server_config& cfg) {
  const std::string dir = parent_of(cfg.socket_path);
  const uid_t me = ::geteuid();
  struct stat st{};
  if (::stat(dir.c_str(), &st) != 0 && errno == ENOENT && !cfg.socket_path_explicit) {
    // The default's directory (/run/xbuf for a system daemon): ours to make.
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      return fail(errc::io_error, "socket directory '" + dir + "': mkdir: " + errno_text(errno));
    }
  }
  if (::stat(dir.c_str(), &st) != 0) {
    return fail(errc::io_error, "socket directory '" + dir + "': " + errno_text(errno) +
                                    (cfg.socket_path_explicit ? "" : " (set XDG_RUNTIME_DIR or pass --socket)"));
  }
  if (!S_ISDIR(st.st_mode)) return fail(errc::invalid_argument, "socket directory '" + dir + "': not a directory");
  if (st.st_uid != me && st.st_uid != 0) {
    return fail(errc::permission_denied, "socket directory '" + dir + "': owned by uid " + std::to_string(st.st_uid) +
                                             ", not this daemon's uid " + std::to_string(me) +
                                             " or root: its owner could replace the socket");
  }
  if ((st.st_mode & S_IWOTH) != 0) {
    if (!cfg.socket_path_explicit) {
      return fail(errc::permission_denied,
                  "socket directory '" + dir + "': world-writable (mode " + octal(st.st_mode) +
                      "): anyone could take the socket path first; the default is never such a directory "
                      "(set XDG_RUNTIME_DIR, or pass --socket)");
    }
    if (st.st_uid != me) {
      return fail(errc::permission_denied,
                  "socket directory '" + dir + "': world-writable (mode " + octal(st.st_mode) + ") and owned by uid " +
                      std::to_string(st.st_uid) + ", not this daemon's uid " + std::to_string(me) +
                      ": anyone could take the socket path first; use a directory only uid " + std::to_string(me) +
                      " can write, e.g. $XDG_RUNTIME_DIR");
    }
  }
  return ok();
}

// An existing file at the path: our own stale socket is removed; anything
// else is an error (another daemon, or a file that is not ours to delete).
status clear_stale_socket(const std::string& path, const sockaddr* sa, socklen_t len) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return ok();
  const uid_t me = ::geteuid();
  if (st.st_uid != me) {
    return fail(errc::permission_denied, "socket path '" + path + "': owned by uid " + std::to_string(st.st_uid) +
                                             ", not this daemon's uid " + std::to_string(me) +
                                             "; not removing it (remove it yourself if it is stale)");
  }
  if (!S_ISSOCK(st.st_mode)) {
    return fail(errc::already_exists, "socket path '" + path + "': exists and is not a socket");
  }
  const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    const bool live = ::connect(probe, sa, len) == 0;
    ::close(probe);
    if (live) return fail(errc::already_exists, "socket path '" + path + "': another xbufd is listening");
  }
  ::unlink(path.c_str());  // stale, and ours: its daemon is gone
  return ok();
}

result<gid_t> lookup_group(const std::string& name) {
  long size = ::sysconf(_SC_GETGR_R_SIZE_MAX);
  std::vector<char> buf(static_cast<std::size_t>(size > 0 ? size : 16384));
  group g{};
  group* found = nullptr;
  int e = 0;
  while ((e = ::getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 20)) {
    buf.resize(buf.size() * 2);
  }
  if (e != 0) return fail(errc::io_error, "--socket-group '" + name + "': " + errno_text(e));
  if (found == nullptr) return fail(errc::invalid_argument, "--socket-group '" + name + "': no such group");
  return g.gr_gid;
}

bool fd_exhausted(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE || ec == asio::error::no_buffer_space ||
         ec == asio::error::no_memory;
}

// At the fd limit: the reserve fd is given up for a moment so that the
// connections already waiting can be accepted and told, rather than left
// hanging in the backlog until the daemon has fds again. Returns how many
// were refused; `reserve` is taken again afterwards (it stays -1 when
// something else took the freed slot first, and is retried next time).
std::size_t refuse_waiting(int listen_fd, int* reserve, const error& why) {
  if (*reserve >= 0) {
    ::close(*reserve);
    *reserve = -1;
  }
  std::size_t refused = 0;
  for (; refused < 64; ++refused) {  // bounded: one backoff tick does bounded work
    pollfd p{listen_fd, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) break;
    const int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) break;
    refuse_connection(fd, why);
    ::close(fd);
  }
  *reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return refused;
}

}  // namespace

result<fd_limits> raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return fail(errc::io_error, "getrlimit(RLIMIT_NOFILE): " + errno_text(errno));
  fd_limits out{.before = rl.rlim_cur, .now = rl.rlim_cur};
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      return fail(errc::io_error, "setrlimit(RLIMIT_NOFILE, " + std::to_string(rl.rlim_max) + "): " + errno_text(errno));
    }
    out.now = rl.rlim_cur;
  }
  return out;
}

void refuse_connection(int fd, const error& why) noexcept {
  try {
    // A client sends hello first, right after connecting; whatever of it
    // is here already is all we wait for.
    std::array<std::uint8_t, 4096> buf{};
    const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 0) {
      wire::frame_parser parser(true);
      parser.feed(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)));
      auto r = parser.next();
      if (r.status == wire::parse_status::complete &&
          r.frame_.header.type == static_cast<std::uint16_t>(wire::msg_type::hello)) {
        auto reply = wire::encode_error_reply(r.frame_.header.type, r.frame_.header.request_id, why);
        (void)::send(fd, reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      }
    }
  } catch (...) {
    // bad_alloc: the client sees the connection close, which is the refusal too.
  }
  ::shutdown(fd, SHUT_RDWR);
}

result<int> bind_listener(const server_config& cfg) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (cfg.socket_path.empty() || cfg.socket_path.size() >= sizeof addr.sun_path) {
    return fail(errc::invalid_argument, "socket path '" + cfg.socket_path + "': empty or longer than " +
                                            std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  if ((cfg.socket_mode & ~0777u) != 0) {
    return fail(errc::invalid_argument, "socket mode " + octal(cfg.socket_mode) + ": only permission bits (0..0777)");
  }
  std::optional<gid_t> group;
  if (!cfg.socket_group.empty()) {
    auto g = lookup_group(cfg.socket_group);
    if (!g) return std::move(g).err();
    group = *g;
  }
  std::memcpy(addr.sun_path, cfg.socket_path.c_str(), cfg.socket_path.size() + 1);
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);
  if (auto s = check_socket_directory(cfg); !s) return std::move(s).err();
  if (auto s = clear_stale_socket(cfg.socket_path, sa, sizeof addr); !s) return std::move(s).err();

  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(errc::io_error, "socket(): " + errno_text(errno));
  // bind() creates the file with 0777 & ~umask: with this umask it has
  // exactly socket_mode from its first moment; a chmod afterwards would
  // leave a window with the process umask's permissions.
  const mode_t old_umask = ::umask(static_cast<mode_t>(~cfg.socket_mode & 0777u));
  const int bound = ::bind(fd, sa, sizeof addr);
  const int bind_errno = errno;
  ::umask(old_umask);
  if (bound != 0) {
    ::close(fd);
    return fail(errc::io_error, "bind '" + cfg.socket_path + "': " + errno_text(bind_errno));
  }
  auto undo = [&](const std::string& what) {
    const int e = errno;
    ::close(fd);
    ::unlink(cfg.socket_path.c_str());
    return fail(errc::io_error, what + " '" + cfg.socket_path + "': " + errno_text(e));
  };
  if (group && ::fchownat(AT_FDCWD, cfg.socket_path.c_str(), static_cast<uid_t>(-1), *group, AT_SYMLINK_NOFOLLOW) != 0) {
    return undo("chown to group '" + cfg.socket_group + "'");
  }
  if (::listen(fd, 64) != 0) return undo("listen");
  return fd;
}

asio::awaitable<void> accept_loop(server_state& srv, asio::local::stream_protocol::acceptor& acceptor) {
  constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);
  // The reserve: one fd that refuse_waiting() gives up at the fd limit.
  int reserve = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  struct close_reserve {
    int* fd;
    ~close_reserve() {
      if (*fd >= 0) ::close(*fd);
    }
  } closer{&reserve};
  asio::steady_timer backoff(srv.ioc);
  log_limiter limiter(srv.log_interval);
  log_limiter headroom_log(srv.log_interval);
  // accept() returns the lowest free descriptor, so a connection whose fd is
  // within `headroom` of the limit means fewer than that are left: it is
  // refused, and connections alone can never take the daemon's last fds
  // (which its buffers, exports, the log and even a sanitizer runtime need:
  // UBSan's vptr check probes memory with pipe() and reports a false
  // "invalid vptr" when none is left).
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  const std::uint64_t fd_limit = rl.rlim_cur;
  const std::uint64_t headroom = std::min<std::uint64_t>(srv.config.fd_headroom, fd_limit / 4);
  std::uint64_t failures = 0;   // since the last line
  std::uint64_t refused = 0;    // since the last line
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(asio::make_strand(srv.ioc), tuple_awaitable);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (!ec) {
      if (static_cast<std::uint64_t>(sock.native_handle()) + headroom >= fd_limit) {
        std::uint64_t left_out = 0;
        if (headroom_log.allow(&left_out)) {
          srv.log.warning("refused a connection: fd %d is within %llu of the fd limit %llu [%llu more refused since the "
                          "last line]",
                          sock.native_handle(), static_cast<unsigned long long>(headroom),
                          static_cast<unsigned long long>(fd_limit), static_cast<unsigned long long>(left_out));
        }
        refuse_connection(sock.native_handle(),
                          error{errc::io_error, "xbufd is at its file descriptor limit; try again later"});
        continue;  // the socket closes here
      }
      start_session(srv, std::move(sock), srv.next_owner.fetch_add(1));
      continue;
    }
    if (ec == asio::error::connection_aborted) continue;  // the client left before we took it
    // Anything else repeats at once if retried at once (EMFILE does even
    // with nobody waiting): back off, and say so once per interval.
    ++failures;
    if (fd_exhausted(ec)) {
      refused += refuse_waiting(acceptor.native_handle(), &reserve,
                                error{errc::io_error, "xbufd is at its file descriptor limit; try again later"});
    }
    std::uint64_t left_out = 0;
    if (limiter.allow(&left_out)) {
      srv.log.warning("accept: %s%s: retrying every %lld ms; %llu failed accepts and %llu refused connections since the "
                      "last line",
                      ec.message().c_str(),
                      fd_exhausted(ec) ? (" (fd limit " + std::to_string(fd_limit) + ")").c_str() : "",
                      static_cast<long long>(srv.config.accept_backoff.count()),
                      static_cast<unsigned long long>(failures), static_cast<unsigned long long>(refused));
      failures = 0;
      refused = 0;
    }
    backoff.expires_after(srv.config.accept_backoff);
    auto [timer_ec] = co_await backoff.async_wait(tuple_awaitable);
    if (timer_ec || !acceptor.is_open()) co_return;
  }
}

}  // namespace xbuf::server
