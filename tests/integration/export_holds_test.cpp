// SPDX-License-Identifier: MIT
//
// Exported memory is not reused while anyone can reach it (DESIGN.md,
// "Tenancy"; issue 9, "Export lifetimes"), against the real xbufd: a tenant
// that exports a buffer, frees it and keeps the fd keeps it charged to
// itself - shown in stats - until it sends `release` or goes away, here as
// a child process killed with SIGKILL.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>

#include "client/remote_client.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;
using client::remote_client;

constexpr std::uint64_t KiB = 1024;

std::optional<wire::stat_domain> domain(remote_client& c, const std::string& name) {
  auto s = c.stats();
  if (!s) return std::nullopt;
  for (const auto& d : s->domains) {
    if (d.name == name) return d;
  }
  return std::nullopt;
}

std::optional<wire::stat_client> row(remote_client& c, const std::string& name) {
  auto s = c.stats();
  if (!s) return std::nullopt;
  for (const auto& r : s->clients) {
    if (r.name == name) return r;
  }
  return std::nullopt;
}

// Before: free destroyed the buffer at once, so its 256 KiB left every
// account (the issue: "charged to the owner meanwhile; shown in stats").
TEST(ExportHoldsTest, AFreedExportStaysChargedUntilItsHolderDies) {
  test::scratch_daemon d({});
  ASSERT_TRUE(d.up()) << d.log();
  auto watcher = remote_client::connect(d.socket(), "watcher");
  ASSERT_TRUE(watcher) << watcher.err().describe();
  const auto base = domain(*watcher, "vram1");
  ASSERT_TRUE(base);

  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(ready[0]);
    auto c = remote_client::connect(d.socket(), "holder");
    if (!c) ::_exit(1);
    auto id = c->alloc(256 * KiB, {placement::vram(1)});
    if (!id) ::_exit(2);
    auto e = c->export_fd(*id);  // kept open: the holder reaches the pages
    if (!e || !c->free(*id)) ::_exit(3);
    (void)!::write(ready[1], "r", 1);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char r = 0;
  ASSERT_EQ(::read(ready[0], &r, 1), 1) << "the holder failed before it was ready";
  ::close(ready[0]);

  auto held = domain(*watcher, "vram1");
  ASSERT_TRUE(held);
  EXPECT_EQ(held->used, base->used + 256 * KiB) << "freed, but its fd is out: not free";
  EXPECT_EQ(held->exported_bytes, 256 * KiB);
  auto holder = row(*watcher, "holder");
  ASSERT_TRUE(holder);
  EXPECT_EQ(holder->bytes, 0u);
  EXPECT_EQ(holder->freed_exported_bytes, 256 * KiB) << "charged to the tenant that freed it";

  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  // The daemon sees the hang-up and releases what the holder held.
  std::optional<wire::stat_domain> after;
  for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
    after = domain(*watcher, "vram1");
    if (after && after->used == base->used) break;
    std::this_thread::sleep_for(20ms);
  }
  ASSERT_TRUE(after);
  EXPECT_EQ(after->used, base->used) << "the dead holder's export still held vram1";
  EXPECT_EQ(after->exported_bytes, 0u);
}

TEST(ExportHoldsTest, ReleaseEndsAHoldAndIsRefusedByName) {
  test::scratch_daemon d({});
  ASSERT_TRUE(d.up()) << d.log();
  auto a = remote_client::connect(d.socket(), "a");
  auto b = remote_client::connect(d.socket(), "b");
  ASSERT_TRUE(a && b);
  auto id = a->alloc(64 * KiB, {placement::pinned()});
  ASSERT_TRUE(id);
  auto e = a->export_fd(*id);
  ASSERT_TRUE(e);
  ::close(e->fd);
  ASSERT_TRUE(a->free(*id));
  auto other = b->release_export(*id);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.code(), errc::not_found) << "b holds nothing of a's";
  ASSERT_TRUE(a->release_export(*id));
  auto again = a->release_export(*id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.code(), errc::not_found);
  EXPECT_NE(again.err().message.find("holds no unreleased export"), std::string::npos) << again.err().message;
  auto pinned = domain(*a, "pinned");
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->exported_bytes, 0u);
}

}  // namespace
}  // namespace xbuf
