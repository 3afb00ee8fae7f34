// SPDX-License-Identifier: MIT
//
// cli_args.cpp - cli_args.hpp.
#include "client/cli_args.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/whole_number.hpp"
#include "server/protocol.hpp"

namespace xbuf::client::cli {

namespace {

// Whether nobody listens at `path`: no such file, or a socket file whose
// connect is refused (a daemon that died without removing it). Anything
// else (a permission problem, a daemon of another uid) is not for the
// "start xbufd" hint.
bool nobody_listens(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno == ENOENT || errno == ENOTDIR;
  if (!S_ISSOCK(st.st_mode)) return false;
  sockaddr_un addr{};
  if (path.size() >= sizeof addr.sun_path) return false;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  const bool refused = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 &&
                       errno == ECONNREFUSED;
  ::close(fd);
  return refused;
}

}  // namespace

void arg_reader::bad(std::string_view why) const {
  const std::string_view flag = current();
  std::fprintf(stderr, "%.*s: %.*s: %.*s\n", static_cast<int>(command_.size()), command_.data(),
               static_cast<int>(flag.size()), flag.data(), static_cast<int>(why.size()),
               why.data());
}

std::optional<std::string> arg_reader::value() {
  if (i_ + 1 >= args_.size() || args_[i_ + 1] == nullptr) {
    bad("needs a value");
    return std::nullopt;
  }
  return std::string(args_[++i_]);
}

std::optional<std::uint64_t> arg_reader::number(std::uint64_t min, std::uint64_t max) {
  if (i_ + 1 >= args_.size() || args_[i_ + 1] == nullptr) {
    bad("needs a value");
    return std::nullopt;
  }
  const std::string_view text = args_[i_ + 1];
  auto n = parse_whole_number(text, min, max);
  if (!n) {
    bad("'" + std::string(text) + "' is not a whole number in " + std::to_string(min) + ".." +
        std::to_string(max));
    return std::nullopt;
  }
  ++i_;
  return n;
}

int arg_reader::unknown(std::string_view usage_line) const {
  const std::string_view a = current();
  std::fprintf(stderr, "%.*s: unknown option '%.*s'\n%.*s\n", static_cast<int>(command_.size()),
               command_.data(), static_cast<int>(a.size()), a.data(),
               static_cast<int>(usage_line.size()), usage_line.data());
  return exit_usage;
}

std::string socket_path(const std::optional<std::string>& flag_value) {
  return flag_value ? *flag_value : wire::default_socket_path();
}

std::optional<remote_client> connect(std::string_view command, const std::string& path,
                                     const std::string& client_name) {
  auto c = remote_client::connect(path, client_name);
  if (c) return std::move(*c);
  const int cmd_len = static_cast<int>(command.size());
  std::fprintf(stderr, "%.*s: %s\n", cmd_len, command.data(), c.err().describe().c_str());
  if (c.code() == errc::io_error && nobody_listens(path)) {
    std::fprintf(stderr,
                 "%.*s: no xbufd listening at %s (start it: xbufd --socket %s, or point --socket "
                 "or XBUF_SOCKET at a running one)\n",
                 cmd_len, command.data(), path.c_str(), path.c_str());
  }
  return std::nullopt;
}

}  // namespace xbuf::client::cli
