// SPDX-License-Identifier: MIT
#include "tests/integration/daemon_process.hpp"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "tests/common/bin_dir.hpp"

namespace xbuf::test {

using client::remote_client;
using namespace std::chrono_literals;

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::size_t count_lines_with(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) n += line.find(what) != std::string::npos ? 1 : 0;
  return n;
}

int raw_connect(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

daemon_process::daemon_process(daemon_spec spec, const std::string& log) : spec_(std::move(spec)), log_(log) {
  const std::string bin = test::bin_dir() + "/xbufd";
  pid_ = ::fork();
  if (pid_ != 0) return;
  const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd >= 0) {
    ::dup2(fd, 1);
    ::dup2(fd, 2);
  }
  for (auto& [k, v] : spec_.env) {
    if (v) ::setenv(k.c_str(), v->c_str(), 1);
    else ::unsetenv(k.c_str());
  }
  if (spec_.nofile) {
    rlimit rl{*spec_.nofile, *spec_.nofile};
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) ::_exit(126);
  }
  if (spec_.uid && (::setgid(*spec_.uid) != 0 || ::setuid(*spec_.uid) != 0)) ::_exit(125);
  std::vector<std::string> args{"xbufd", "--backend", "sim", "--sim-vram", "1M", "--pinned", "4M"};
  if (spec_.socket) {
    args.push_back("--socket");
    args.push_back(*spec_.socket);
  }
  for (auto& a : spec_.args) args.push_back(a);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execv(bin.c_str(), argv.data());
  std::perror("exec xbufd");
  ::_exit(127);
}

bool daemon_process::wait_up(const std::string& socket, const client::connect_options& opt) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (exited()) return false;
    if (auto c = remote_client::connect(socket, "probe", opt)) break;
    std::this_thread::sleep_for(20ms);
  }
  return wait_log("disconnected", 1, 20s);
}

bool daemon_process::wait_log(const std::string& what, std::size_t n, std::chrono::seconds limit) const {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (count_lines_with(log(), what) >= n) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

std::optional<int> daemon_process::wait_exit(std::chrono::seconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (exited()) return status_;
    std::this_thread::sleep_for(10ms);
  }
  return std::nullopt;
}

int daemon_process::stop() {
  if (pid_ <= 0) return status_;
  if (!exited()) {
    ::kill(pid_, SIGTERM);
    if (!wait_exit(20s)) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status_, 0);
      pid_ = -1;
    }
  }
  return status_;
}

scratch_daemon::scratch_daemon(std::vector<std::string> args) {
  char d[] = "/tmp/xbuf-test-XXXXXX";
  if (::mkdtemp(d) == nullptr) return;
  dir_ = d;
  socket_ = dir_ + "/xbuf.sock";
  log_ = dir_ + "/xbufd.log";
  daemon_ = std::make_unique<daemon_process>(
      daemon_spec{.args = std::move(args), .socket = socket_, .nofile = {}, .uid = {}, .env = {}}, log_);
  up_ = daemon_->wait_up(socket_);
}

scratch_daemon::~scratch_daemon() {
  if (daemon_) daemon_->stop();
  if (!dir_.empty()) std::filesystem::remove_all(dir_);
}

bool daemon_process::exited() {
  if (pid_ <= 0) return true;
  if (::waitpid(pid_, &status_, WNOHANG) == pid_) {
    pid_ = -1;
    return true;
  }
  return false;
}

namespace {
// The copies bin_dir_for made, by what was asked; removed when the test exits.
struct bin_copies {
  std::map<std::string, std::string> made;
  ~bin_copies() {
    std::error_code ec;
    for (const auto& [key, dir] : made) std::filesystem::remove_all(dir, ec);
  }
};
}  // namespace

std::string bin_dir_for(uid_t uid, const std::vector<std::string>& names) {
  static bin_copies copies;
  std::string key = std::to_string(uid);
  for (const auto& n : names) key += "/" + n;
  if (auto it = copies.made.find(key); it != copies.made.end()) return it->second;
  const std::string dir = bin_dir();
  const pid_t pid = ::fork();
  if (pid == 0) {
    bool ok = ::setgroups(0, nullptr) == 0 && ::setgid(uid) == 0 && ::setuid(uid) == 0;
    for (const auto& n : names) ok = ok && ::access((dir + "/" + n).c_str(), X_OK) == 0;
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  if (pid > 0 && ::waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0) return dir;
  char tmpl[] = "/tmp/xbuf-bin-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr || ::chmod(tmpl, 0755) != 0) return "";
  std::error_code ec;
  for (const auto& n : names) {
    std::filesystem::copy_file(dir + "/" + n, std::string(tmpl) + "/" + n,
                               std::filesystem::copy_options::overwrite_existing, ec);
    if (ec) return "";
  }
  copies.made[key] = tmpl;
  return tmpl;
}

}  // namespace xbuf::test
