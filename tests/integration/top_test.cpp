// SPDX-License-Identifier: MIT
//
// `xbuf top` in a real terminal: tmux runs it in a detached 100x30 session
// against the real xbufd; capture-pane reads the screen, send-keys presses
// q. Skipped where tmux is missing (scripts/install-deps.sh installs it).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <initializer_list>
#include <cstdio>
#include <string>
#include <thread>

#include "client/remote_client.hpp"
#include "tests/common/bin_dir.hpp"
#include "tests/common/shell.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

// Runs `cmd` through the shell; its stdout.
std::string shell(const std::string& cmd) { return test::run_shell(cmd).out; }

class TopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (shell("command -v tmux").empty()) GTEST_SKIP() << "tmux is not installed";
    ASSERT_TRUE(daemon_.up()) << daemon_.log();
    server_ = "xbuf-top-test-" + std::to_string(::getpid());
  }
  void TearDown() override {
    if (!server_.empty()) (void)shell(tmux("kill-server") + " 2>/dev/null");
  }
  std::string tmux(const std::string& args) const { return "tmux -L " + server_ + " " + args; }
  std::string screen() const { return shell(tmux("capture-pane -p -t top") + " 2>/dev/null"); }
  // The screen once it shows every one of `what` at once, or "" after 10 s.
  // All at once: a capture can land while a refresh is half drawn.
  std::string wait_for(std::initializer_list<std::string> what) const {
    for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
      const std::string s = screen();
      bool all = true;
      for (const auto& w : what) all = all && s.find(w) != std::string::npos;
      if (all) return s;
      std::this_thread::sleep_for(100ms);
    }
    return "";
  }

  test::scratch_daemon daemon_{{"--sim-vram", "32M"}};
  std::string server_;
};

TEST_F(TopTest, ShowsTheDomainsFollowsAnAllocationAndQuitsOnQ) {
  const std::string cmd = test::bin_dir() + "/xbuf top --socket " + daemon_.socket() + " --interval 1";
  (void)shell(tmux("new-session -d -s top -x 100 -y 30 '" + cmd + "'"));
  const std::string first = wait_for({"DOMAIN", "vram1", "pageable", "xbuf-top", "RECENT"});
  ASSERT_NE(first, "") << "no screen with the domains and its own client row:\n" << screen() << daemon_.log();
  for (std::size_t start = 0, end; start < first.size(); start = end + 1) {
    end = first.find('\n', start);
    if (end == std::string::npos) end = first.size();
    EXPECT_LE(end - start, 100u) << "a line wider than the terminal";
  }

  auto c = client::remote_client::connect(daemon_.socket(), "tenant");
  ASSERT_TRUE(c) << c.err().describe();
  ASSERT_TRUE(c->alloc(8u << 20, {placement::vram(0)}));
  const std::string after = wait_for({"allocations +1", "tenant", "8 MiB"});
  EXPECT_NE(after, "") << "the allocation (its event, its client, vram0's 8 MiB) never showed:\n" << screen();

  (void)shell(tmux("send-keys -t top q"));
  bool gone = false;
  for (auto until = std::chrono::steady_clock::now() + 10s; !gone && std::chrono::steady_clock::now() < until;) {
    gone = shell(tmux("has-session -t top") + " 2>/dev/null && echo up").empty();
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(gone) << "xbuf top did not quit on q:\n" << screen();
}

// What scripts/run.sh relies on: --seconds ends it by itself.
TEST_F(TopTest, SecondsEndsItWithoutAKey) {
  const std::string cmd = test::bin_dir() + "/xbuf top --socket " + daemon_.socket() + " --seconds 2";
  (void)shell(tmux("new-session -d -s top -x 100 -y 30 '" + cmd + "'"));
  ASSERT_NE(wait_for({"vram0"}), "") << screen();
  bool gone = false;
  for (auto until = std::chrono::steady_clock::now() + 15s; !gone && std::chrono::steady_clock::now() < until;) {
    gone = shell(tmux("has-session -t top") + " 2>/dev/null && echo up").empty();
    if (!gone) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(gone) << "xbuf top --seconds 2 still runs:\n" << screen();
}

}  // namespace
}  // namespace xbuf
