// SPDX-License-Identifier: MIT
//
// xbufd's config file (issue 12, item 4), against the real daemon: a limit
// set in the file is enforced, a flag overrides the file, a file value is
// refused with the flag's own words, and every unusable file (an unknown
// key, a bad value, bad TOML, a missing --config FILE) exits 2 naming the
// file, the line and the key before anything is started.
//
// Each case writes its file into a private directory. Waits are bounded;
// nothing asserts a duration.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "client/remote_client.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using client::remote_client;
using namespace std::chrono_literals;

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

class ConfigFileDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char d[] = "/tmp/xbuf-config-XXXXXX";
    ASSERT_NE(::mkdtemp(d), nullptr);
    dir_ = d;
    socket_ = dir_ + "/xbuf.sock";
    log_ = dir_ + "/xbufd.log";
    config_ = dir_ + "/xbufd.toml";
  }
  void TearDown() override {
    if (daemon_) {
      if (HasFailure()) std::fprintf(stderr, "xbufd log:\n%s\n", daemon_->log().c_str());
      daemon_->stop();
    }
    std::filesystem::remove_all(dir_);
  }

  void write_config(const std::string& text) { std::ofstream(config_) << text; }

  // xbufd with `args` after --socket (daemon_process puts its own defaults first).
  test::daemon_process& start(std::vector<std::string> args) {
    daemon_.reset();
    daemon_ = std::make_unique<test::daemon_process>(
        test::daemon_spec{
            .args = std::move(args), .socket = socket_, .nofile = {}, .uid = {}, .env = {}},
        log_);
    return *daemon_;
  }

  // The exit code of a daemon expected to stop by itself, -1 if it did not.
  int exit_code(test::daemon_process& d) {
    const auto st = d.wait_exit(20s);
    if (!st || !WIFEXITED(*st)) return -1;
    return WEXITSTATUS(*st);
  }

  bool socket_exists() const {
    struct stat st {};
    return ::lstat(socket_.c_str(), &st) == 0;
  }

  std::string dir_, socket_, log_, config_;
  std::unique_ptr<test::daemon_process> daemon_;
};

// Before: xbufd had no config file; "--config" was an unknown option (exit 2).
TEST_F(ConfigFileDaemonTest, LimitFromTheFileIsEnforced) {
  write_config("# one client at a time\nmax-connections = 1\n");
  auto& d = start({"--config", config_});
  ASSERT_TRUE(d.wait_up(socket_));
  EXPECT_TRUE(has(d.log(), "config file " + config_ + " (1 settings)")) << d.log();
  auto first = remote_client::connect(socket_, "first");
  ASSERT_TRUE(first) << first.err().describe();
  auto second = remote_client::connect(socket_, "second");
  ASSERT_FALSE(second) << "a second client was served with max-connections = 1 in the file";
  // The refusal names the limit; the daemon closes right after writing it,
  // so the client's hello may meet the closed socket first (EPIPE, seen
  // under ASan). The daemon's log says why either way.
  if (second.code() == errc::quota_exceeded) {
    EXPECT_TRUE(has(second.err().message, "--max-connections")) << second.err().message;
  } else {
    EXPECT_EQ(second.code(), errc::io_error) << second.err().describe();
    EXPECT_TRUE(d.wait_log("refused a connection")) << d.log();
    EXPECT_TRUE(has(d.log(), "(--max-connections)")) << d.log();
  }
  EXPECT_TRUE(first->stats());
}

TEST_F(ConfigFileDaemonTest, FlagsOverrideTheFile) {
  // The file names another socket and one connection; the flags say otherwise.
  write_config("socket = \"" + dir_ + "/from-file.sock\"\nmax-connections = 1\n");
  auto& d = start({"--config", config_, "--max-connections", "2"});
  ASSERT_TRUE(d.wait_up(socket_)) << "not listening on the --socket path";
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/from-file.sock"));
  auto first = remote_client::connect(socket_, "first");
  ASSERT_TRUE(first) << first.err().describe();
  auto second = remote_client::connect(socket_, "second");
  EXPECT_TRUE(second) << "--max-connections 2 did not override the file's 1: "
                      << second.err().describe();
}

TEST_F(ConfigFileDaemonTest, SizesAndSecondsInTheFileAreTheFlagsOwn) {
  write_config(
      "max-queued-bytes = \"256K\"\n"
      "frame-timeout = 2.5\n"
      "stats-interval = 0\n"
      "quota-per-domain = 1048576\n"
      "socket-mode = \"0600\"\n");
  auto& d = start({"--config", config_});
  ASSERT_TRUE(d.wait_up(socket_));
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "socket-mode from the file was not applied";
}

// The same text is refused with the same words whether it came as a flag
// or from the file; only the prefix (the flag, or file:line: key) differs.
TEST_F(ConfigFileDaemonTest, ABadValueIsRefusedWithTheFlagsWordsAndItsLine) {
  const std::string why = "'2x' is not a whole number in 1..1000000";
  {
    auto& d = start({"--max-connections", "2x"});
    EXPECT_EQ(exit_code(d), 2);
    EXPECT_TRUE(has(d.log(), "xbufd: --max-connections: " + why)) << d.log();
  }
  write_config("quiet = true\n\nmax-connections = \"2x\"\n");
  auto& d = start({"--config", config_});
  EXPECT_EQ(exit_code(d), 2);
  EXPECT_TRUE(has(d.log(), "xbufd: " + config_ + ":3: max-connections: " + why)) << d.log();
  EXPECT_FALSE(socket_exists()) << "xbufd bound its socket before refusing the file";
  EXPECT_FALSE(has(d.log(), "backend ")) << "the backend was started before refusing the file";
}

TEST_F(ConfigFileDaemonTest, AnUnusableFileExitsTwoNamingFileLineAndKey) {
  struct bad_file {
    std::string text, says;
  };
  const std::vector<bad_file> cases = {
      {"pinned = \"4M\"\nmax-conections = 3\n", config_ + ":2: max-conections: unknown key"},
      {"max_connections = 3\n",
       config_ + ":1: max_connections: unknown key (did you mean max-connections?"},
      {"\n\nmax-connections = 0\n", config_ + ":3: max-connections: '0' is not a whole number"},
      {"pinned = \"12Q\"\n", config_ + ":1: pinned: '12Q' is not a byte count"},
      {"quiet = \"yes\"\n", config_ + ":1: quiet: true or false is expected, not a string"},
      {"quiet = true\nmax-connections = = 3\n", config_ + ":2: "},
  };
  for (const auto& c : cases) {
    write_config(c.text);
    auto& d = start({"--config", config_});
    EXPECT_EQ(exit_code(d), 2) << c.text;
    const std::string log = d.log();
    EXPECT_TRUE(has(log, "xbufd: ")) << log;
    EXPECT_TRUE(has(log, c.says)) << c.text << "\n--- log:\n" << log;
    EXPECT_FALSE(socket_exists()) << c.text;
  }
}

TEST_F(ConfigFileDaemonTest, AMissingConfigFileIsAnErrorThatNamesIt) {
  const std::string missing = dir_ + "/none.toml";
  auto& d = start({"--config", missing});
  EXPECT_EQ(exit_code(d), 2);
  EXPECT_TRUE(has(d.log(), "xbufd: --config: " + missing + ": no such file")) << d.log();
  EXPECT_FALSE(socket_exists());
}

TEST_F(ConfigFileDaemonTest, ConfigWithoutAFileNameIsAnError) {
  auto& d = start({"--config"});
  EXPECT_EQ(exit_code(d), 2);
  EXPECT_TRUE(has(d.log(), "xbufd: --config: needs a value")) << d.log();
}

TEST_F(ConfigFileDaemonTest, HelpMentionsTheConfigFile) {
  auto& d = start({"--help"});
  EXPECT_EQ(exit_code(d), 0);
  EXPECT_TRUE(has(d.log(), "--config FILE")) << d.log();
  EXPECT_TRUE(has(d.log(), "/etc/xbuf/xbufd.toml")) << d.log();
}

}  // namespace
}  // namespace xbuf
