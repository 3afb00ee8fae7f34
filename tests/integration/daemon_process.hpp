// SPDX-License-Identifier: MIT
//
// daemon_process.hpp - the real xbufd binary as a child process, for the
// integration suites: started with the sim backend and the flags a test
// needs (socket, fd limit, uid, environment), waited for, stopped.
//
// Rules
//   - Waits are bounded (20 s unless a call says otherwise); nothing here
//     asserts how long anything took.
//   - The daemon's stdout and stderr go to a log file the test names, so a
//     failing test can print it.
#pragma once

#include <sys/resource.h>
#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "client/remote_client.hpp"

namespace xbuf::test {

// The whole file, or "" if it cannot be read.
std::string read_file(const std::string& path);
// Lines of `text` that contain `what`.
std::size_t count_lines_with(const std::string& text, const std::string& what);
// A plain connection to a Unix socket, -1 on failure (for raw-frame tests).
int raw_connect(const std::string& path);

// One xbufd process with the sim backend, started the way a test needs it.
struct daemon_spec {
  std::vector<std::string> args;         // after --backend sim --sim-vram 1M --pinned 4M
  std::optional<std::string> socket;     // --socket; nothing: the default path
  std::optional<rlim_t> nofile;          // RLIMIT_NOFILE (soft and hard) of the daemon
  std::optional<uid_t> uid;              // run as this uid (needs root)
  std::vector<std::pair<std::string, std::optional<std::string>>> env;  // set or unset
};

class daemon_process {
 public:
  // Forks and execs XBUF_BIN_DIR/xbufd; returns at once (see wait_up).
  daemon_process(daemon_spec spec, const std::string& log);
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;
  ~daemon_process() { stop(); }

  pid_t pid() const { return pid_; }
  std::string log() const { return read_file(log_); }

  // Waits until a client can say hello (then until that probe's session is
  // gone, so it takes no slot). False if the daemon exited or took too long.
  bool wait_up(const std::string& socket, const client::connect_options& opt = {});
  // Waits for `n` lines containing `what` in the log.
  bool wait_log(const std::string& what, std::size_t n = 1,
                std::chrono::seconds limit = std::chrono::seconds(20)) const;
  // The exit status if the daemon exited within `limit`.
  std::optional<int> wait_exit(std::chrono::seconds limit);
  // SIGTERM, then the exit status (SIGKILL after 20 s). Idempotent.
  int stop();

 private:
  bool exited();

  daemon_spec spec_;
  std::string log_;
  pid_t pid_ = -1;
  int status_ = 0;
};

// xbufd (sim backend, `args` after daemon_spec's defaults) on a socket in
// a private directory of its own, up when the constructor returns unless
// up() says otherwise; stopped and the directory removed on destruction.
// For suites that need one plain daemon; special set-ups (uids, fd limits,
// environment) use daemon_process directly.
class scratch_daemon {
 public:
  explicit scratch_daemon(std::vector<std::string> args);
  scratch_daemon(const scratch_daemon&) = delete;
  scratch_daemon& operator=(const scratch_daemon&) = delete;
  ~scratch_daemon();

  bool up() const { return up_; }
  const std::string& socket() const { return socket_; }
  std::string log() const { return read_file(log_); }
  daemon_process& process() { return *daemon_; }

 private:
  std::string dir_, socket_, log_;
  std::unique_ptr<daemon_process> daemon_;
  bool up_ = false;
};

// A directory holding `names` (binaries of bin_dir()) that uid `uid` may
// execute: bin_dir() itself when it can, else a copy in a fresh 0755
// directory under /tmp - a checkout inside a 0700 home (root's is) cannot
// be entered by another user. "" when the copy failed. Context: forks once
// per call (to ask as `uid`); needs root to ask for another uid.
std::string bin_dir_for(uid_t uid, const std::vector<std::string>& names);

}  // namespace xbuf::test
