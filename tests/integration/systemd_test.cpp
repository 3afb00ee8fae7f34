// SPDX-License-Identifier: MIT
//
// xbufd under systemd (issue 12, item 3), without systemd running: the
// units in packaging/systemd pass `systemd-analyze verify`, and the real
// xbufd, started the way systemd starts a socket-activated service (fd 3 a
// listening socket, LISTEN_FDS=1, LISTEN_PID its pid, NOTIFY_SOCKET a
// datagram socket, JOURNAL_STREAM stderr's device:inode), serves that
// socket, says READY=1 and STOPPING=1, and writes journald priorities; a
// plain run writes none.
//
// The daemon is forked and exec'ed here (daemon_process cannot hand it an
// fd). Waits are bounded; nothing asserts a duration.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "client/remote_client.hpp"
#include "tests/common/bin_dir.hpp"
#include "tests/common/shell.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using client::remote_client;
using namespace std::chrono_literals;

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// A Unix socket of `type` bound at `path` (listening if a stream socket), or -1.
int bound_socket(const std::string& path, int type) {
  const int fd = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  if (fd < 0 || ::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      (type == SOCK_STREAM && ::listen(fd, 16) != 0)) {
    if (fd >= 0) ::close(fd);
    return -1;
  }
  return fd;
}

struct private_dir {
  private_dir() {
    char d[] = "/tmp/xbuf-systemd-XXXXXX";
    if (::mkdtemp(d) != nullptr) path = d;
  }
  ~private_dir() {
    if (!path.empty()) std::filesystem::remove_all(path);
  }
  std::string path;
};

// xbufd as systemd would start it: `fd3` (if >= 0) becomes fd 3 with
// LISTEN_FDS=1 and LISTEN_PID set to the child's pid; stdout and stderr go
// to `log`; `journal` sets JOURNAL_STREAM to that file's device:inode.
class activated_daemon {
 public:
  activated_daemon(int fd3, const std::string& log, const std::vector<std::string>& extra,
                   bool journal, const std::string& notify_socket)
      : log_(log) {
    const std::string bin = test::bin_dir() + "/xbufd";
    pid_ = ::fork();
    if (pid_ != 0) return;
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) ::_exit(126);
    ::dup2(out, 1);
    ::dup2(out, 2);
    ::unsetenv("XBUF_SOCKET");
    ::unsetenv("LISTEN_FDS");
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("JOURNAL_STREAM");
    if (fd3 >= 0) {
      // dup2 clears close-on-exec on the copy (if fd3 is already 3, clear it by hand).
      if (fd3 == 3)
        ::fcntl(3, F_SETFD, 0);
      else if (::dup2(fd3, 3) != 3)
        ::_exit(125);
      ::setenv("LISTEN_FDS", "1", 1);
      ::setenv("LISTEN_PID", std::to_string(::getpid()).c_str(), 1);
    }
    if (!notify_socket.empty()) ::setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
    if (journal) {
      struct stat st {};
      ::fstat(2, &st);
      ::setenv("JOURNAL_STREAM",
               (std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)).c_str(), 1);
    }
    std::vector<std::string> args{"xbufd", "--backend", "sim", "--sim-vram",
                                  "1M",    "--pinned",  "4M"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
  }
  activated_daemon(const activated_daemon&) = delete;
  activated_daemon& operator=(const activated_daemon&) = delete;
  ~activated_daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  std::string log() const { return test::read_file(log_); }

  // The exit code after SIGTERM (or by itself, with term = false); -1 if
  // it did not exit within 20 s or was killed.
  int finish(bool term) {
    if (pid_ <= 0) return -1;
    if (term) ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    int st = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      std::this_thread::sleep_for(10ms);
    }
    return -1;
  }

 private:
  std::string log_;
  pid_t pid_ = -1;
};

// A client on `path` within 20 s (the daemon is still starting).
std::optional<remote_client> connect_within(const std::string& path) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (auto c = remote_client::connect(path, "activated")) return std::move(*c);
    std::this_thread::sleep_for(20ms);
  }
  return std::nullopt;
}

// Every datagram on `fd` until one contains `what` (20 s at most).
bool wait_datagram(int fd, const std::string& what, std::string* seen) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) continue;
    const std::string msg(buf, static_cast<std::size_t>(n));
    *seen += msg + "|";
    if (has(msg, what)) return true;
  }
  return false;
}

#ifndef XBUF_TEST_WITH_SYSTEMD
#define XBUF_TEST_WITH_SYSTEMD 0
#endif

TEST(SystemdUnitsTest, UnitsPassSystemdAnalyzeVerify) {
  const std::string units = XBUF_SOURCE_DIR "/packaging/systemd";
  const std::string service = test::read_file(units + "/xbufd.service");
  const std::string socket = test::read_file(units + "/xbufd.socket");
  ASSERT_FALSE(service.empty());
  ASSERT_FALSE(socket.empty());
  EXPECT_TRUE(has(socket, "\nListenStream=/run/xbuf/xbuf.sock\n")) << socket;
  EXPECT_TRUE(has(socket, "\nSocketMode=0660\n")) << socket;
  EXPECT_TRUE(has(service, "\nType=notify\n")) << service;
  if (::access("/usr/bin/systemd-analyze", X_OK) != 0 &&
      ::access("/bin/systemd-analyze", X_OK) != 0) {
    GTEST_SKIP() << "systemd-analyze is not installed (Debian package: systemd)";
  }
  // verify checks that ExecStart= is executable: point it at the built
  // xbufd, since the installed path (/usr/local/bin) need not exist here.
  private_dir dir;
  ASSERT_FALSE(dir.path.empty());
  const std::string bin = test::bin_dir() + "/xbufd";
  std::ofstream(dir.path + "/xbufd.service")
      << std::regex_replace(service, std::regex("\nExecStart=[^\n]*"), "\nExecStart=" + bin);
  std::ofstream(dir.path + "/xbufd.socket") << socket;
  const std::string cmd = "systemd-analyze verify --man=no " + dir.path + "/xbufd.service " +
                          dir.path + "/xbufd.socket 2>&1";
  const auto [out, rc] = test::run_shell(cmd);
  ASSERT_NE(rc, -1) << out;
  EXPECT_EQ(rc, 0) << out;
  // verify exits 0 on an unknown key too, and only says so: any line is a finding.
  EXPECT_EQ(out, "") << "systemd-analyze verify has findings";
}

TEST(SocketActivationTest, ServesThePassedSocketAndNotifiesReadyAndStopping) {
  if (!XBUF_TEST_WITH_SYSTEMD) GTEST_SKIP() << "built without libsystemd: no socket activation";
  private_dir dir;
  ASSERT_FALSE(dir.path.empty());
  const std::string path = dir.path + "/activated.sock";
  const std::string unused = dir.path + "/unused.sock";
  const int lfd = bound_socket(path, SOCK_STREAM);
  ASSERT_GE(lfd, 0) << std::strerror(errno);
  const int nfd = bound_socket(dir.path + "/notify", SOCK_DGRAM);
  ASSERT_GE(nfd, 0) << std::strerror(errno);
  activated_daemon d(lfd, dir.path + "/xbufd.log", {"--socket", unused}, false,
                     dir.path + "/notify");
  ::close(lfd);  // the daemon holds it now; a client served proves it accepts on it

  auto c = connect_within(path);
  ASSERT_TRUE(c) << "no reply on the passed socket; log:\n" << d.log();
  EXPECT_TRUE(c->stats()) << d.log();
  std::string seen;
  EXPECT_TRUE(wait_datagram(nfd, "READY=1", &seen)) << "no READY=1; got: " << seen;
  EXPECT_TRUE(has(d.log(), "listening on " + path + " (socket from systemd)")) << d.log();
  EXPECT_FALSE(std::filesystem::exists(unused)) << "xbufd bound --socket although it was given one";

  c.reset();
  EXPECT_EQ(d.finish(true), 0) << d.log();
  EXPECT_TRUE(wait_datagram(nfd, "STOPPING=1", &seen)) << "no STOPPING=1; got: " << seen;
  EXPECT_TRUE(std::filesystem::exists(path)) << "xbufd removed the socket file that systemd made";
  // Not the journal: the lines look as they always did.
  EXPECT_FALSE(has(d.log(), "<6>")) << d.log();
  ::close(nfd);
}

TEST(SocketActivationTest, APassedSocketThatIsNotAListeningStreamIsRefused) {
  if (!XBUF_TEST_WITH_SYSTEMD) GTEST_SKIP() << "built without libsystemd: no socket activation";
  private_dir dir;
  ASSERT_FALSE(dir.path.empty());
  const int dgram = bound_socket(dir.path + "/dgram.sock", SOCK_DGRAM);
  ASSERT_GE(dgram, 0);
  activated_daemon d(dgram, dir.path + "/xbufd.log", {"--socket", dir.path + "/unused.sock"}, false,
                     "");
  ::close(dgram);
  EXPECT_EQ(d.finish(false), 1) << d.log();
  EXPECT_TRUE(has(d.log(), "fd 3 is not a listening Unix stream socket")) << d.log();
  EXPECT_FALSE(std::filesystem::exists(dir.path + "/unused.sock"));
}

TEST(JournalTest, LinesCarryPrioritiesOnlyWhenStderrIsTheJournal) {
  private_dir dir;
  ASSERT_FALSE(dir.path.empty());
  const std::string sock = dir.path + "/xbuf.sock";
  {
    activated_daemon d(-1, dir.path + "/journal.log", {"--socket", sock, "--bogus-flag"}, true, "");
    EXPECT_EQ(d.finish(false), 2);
    EXPECT_TRUE(has(d.log(), "<3>xbufd: unknown option '--bogus-flag'")) << d.log();
  }
  activated_daemon d(-1, dir.path + "/journal.log", {"--socket", sock}, true, "");
  auto c = connect_within(sock);
  ASSERT_TRUE(c) << d.log();
  c.reset();
  EXPECT_EQ(d.finish(true), 0) << d.log();
  const std::string log = d.log();
  EXPECT_TRUE(has(log, "<6>xbufd: listening on " + sock)) << log;
  EXPECT_TRUE(has(log, "<6>xbufd: stopped")) << log;
  // Every line of xbufd's own carries one (the usage text is not xbufd's lines).
  EXPECT_EQ(test::count_lines_with(log, "xbufd: "), test::count_lines_with(log, ">xbufd: ")) << log;
}

}  // namespace
}  // namespace xbuf
