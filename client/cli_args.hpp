// SPDX-License-Identifier: MIT
//
// cli_args.hpp - what every `xbuf` subcommand that talks to xbufd shares:
// its exit codes, a strict reader of its arguments, the socket it connects
// to, and a connection that says how to start xbufd when none is there.
//
// Overview
//   A subcommand walks its arguments with arg_reader:
//
//     cli::arg_reader r("xbuf demo", args);
//     while (r.next()) {
//       if (r.is("--seconds")) { auto n = r.number(1, 86'400); if (!n) return cli::exit_usage; ...
//       } else if (r.is("--help") || r.is("-h")) { std::fputs(help, stdout); return cli::exit_ok; }
//       else return r.unknown("usage: xbuf demo [--socket PATH] [--seconds N] [--name NAME]");
//     }
//
//   and connects with cli::connect(), which prints why it could not.
//
// Rules
//   - Exit codes, the same for every xbuf command (and documented in each
//     --help): 0 done, 1 a runtime error (xbufd unreachable or refusing, a
//     file that cannot be read), 2 a usage error (an unknown command or
//     option, a missing or bad value). xbufd's usage errors are 2 as well.
//   - Numbers are whole decimal numbers in a range, nothing else: "2x",
//     "", "-1", "+3", " 4" and "0x10" are usage errors whose message names
//     the command, the flag and the value
//     ("xbuf demo: --seconds: '2x' is not a whole number in 1..86400").
//   - The socket: --socket PATH, else wire::default_socket_path() ($XBUF_SOCKET,
//     else /run/xbuf/xbuf.sock for root, else $XDG_RUNTIME_DIR/xbuf.sock),
//     the path xbufd and the C ABI use.
//   - Every message goes to stderr, prefixed with the command ("xbuf stat: ").
//   - Context: single-threaded CLI code; connect() blocks on the socket.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "client/remote_client.hpp"

namespace xbuf::client::cli {

inline constexpr int exit_ok = 0;
inline constexpr int exit_runtime = 1;
inline constexpr int exit_usage = 2;

// The lines every --help ends with: the exit codes above.
inline constexpr const char* exit_codes_help =
    "exit status: 0 ok, 1 runtime error (xbufd unreachable or refusing, a file that\n"
    "cannot be read), 2 usage error (unknown option, missing or bad value)\n";

// The socket lines of the help of a command that connects.
inline constexpr const char* socket_help =
    "  --socket PATH   xbufd's socket (default $XBUF_SOCKET, else /run/xbuf/xbuf.sock\n"
    "                  for root, else $XDG_RUNTIME_DIR/xbuf.sock)\n";

class arg_reader {
 public:
  // `command` prefixes every message ("xbuf demo"); `args` are the
  // arguments after the subcommand's name. Both must outlive the reader.
  arg_reader(std::string_view command, std::span<char*> args) : command_(command), args_(args) {}

  // Moves to the next argument; false past the last.
  bool next() { return ++i_ < args_.size(); }
  std::string_view current() const { return args_[i_] != nullptr ? args_[i_] : ""; }
  bool is(std::string_view flag) const { return current() == flag; }

  // The value after the current flag (and moves past it); nothing, after
  // saying "--socket: needs a value", when the flag is the last argument.
  std::optional<std::string> value();
  // The value as a whole number in [min, max]; nothing after saying why.
  std::optional<std::uint64_t> number(std::uint64_t min, std::uint64_t max);

  // Says "unknown option 'X'" and the usage line; returns exit_usage.
  int unknown(std::string_view usage_line) const;

 private:
  void bad(std::string_view why) const;

  std::string_view command_;
  std::span<char*> args_;
  std::size_t i_ = static_cast<std::size_t>(-1);
};

// `flag_value` when --socket was given, else the default path (the rules above).
std::string socket_path(const std::optional<std::string>& flag_value);

// Connects to xbufd at `path` as `client_name`. On failure prints the
// client's error and, when nobody listens at `path` (no such file, or a
// socket file nobody accepts on), how to start xbufd there or point
// XBUF_SOCKET at one; then returns nothing (the caller exits exit_runtime).
// Context: blocks on the socket.
std::optional<remote_client> connect(std::string_view command, const std::string& path,
                                     const std::string& client_name);

}  // namespace xbuf::client::cli
