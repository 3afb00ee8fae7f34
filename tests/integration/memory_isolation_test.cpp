// SPDX-License-Identifier: MIT
//
// What one tenant's memory is to another (issue 9, defects 1-3; DESIGN.md
// "An fd reaches one buffer", "Memory is zeroed before it reaches a new
// owner"), against the real xbufd on the sim backend: the attacker is a
// child process with a connection of its own, reaching memory only
// through what the daemon gives it - exported fds, mapped with mmap.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "client/allocator.hpp"
#include "client/remote_client.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using client::remote_client;
constexpr std::uint64_t KiB = 1024;

// Runs `body` in a child process; its exit status (0 = it found nothing).
int in_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) ::_exit(body());
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

// Writes `value` into all of buffer `id` through a CPU access.
bool fill(client::allocator& a, buffer_id id, std::uint8_t value) {
  auto v = a.cpu_begin(id, true);
  if (!v) return false;
  std::memset(v->data, value, v->size);
  return static_cast<bool>(a.cpu_end(id));
}

// Whether every byte of buffer `id` is `value`.
bool holds(client::allocator& a, buffer_id id, std::uint8_t value) {
  auto v = a.cpu_begin(id, false);
  if (!v) return false;
  const auto* p = static_cast<const std::uint8_t*>(v->data);
  bool same = true;
  for (std::uint64_t i = 0; i < v->size && same; ++i) same = p[i] == value;
  return static_cast<bool>(a.cpu_end(id)) && same;
}

class MemoryIsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.up()) << daemon_.log();
    auto a = client::connect_daemon(daemon_.socket(), "victim");
    ASSERT_TRUE(a) << a.err().describe();
    victim_ = std::move(*a);
  }
  buffer_id alloc(std::uint64_t size, placement where) {
    auto id = victim_->alloc({.size = size, .placements = {where}, .name = "victim", .cpu_access = true,
                              .no_evict = false, .alignment = 0});
    EXPECT_TRUE(id) << id.err().describe();
    return id ? *id : buffer_id{};
  }

  test::scratch_daemon daemon_{{}};
  std::unique_ptr<client::allocator> victim_;
};

// Before: the attacker's 4 KiB export was the whole 64 MiB vram0 arena; it
// read the victim's bytes at offset 0 and wrote into them.
TEST_F(MemoryIsolationTest, AnExportReachesOnlyTheAttackersOwnBuffer) {
  const buffer_id mine = alloc(256 * KiB, placement::vram(0));
  ASSERT_TRUE(fill(*victim_, mine, 0xA5));
  const int found = in_child([&] {
    auto c = remote_client::connect(daemon_.socket(), "attacker");
    if (!c) return 10;
    auto id = c->alloc(4 * KiB, {placement::vram(0)});
    if (!id) return 11;
    auto e = c->export_fd(*id);
    if (!e) return 12;
    struct stat st {};
    if (::fstat(e->fd, &st) != 0) return 13;
    if (st.st_size != 4 * 1024) return 1;  // more than its own page
    auto* p = static_cast<std::uint8_t*>(
        ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, e->fd, 0));
    if (p == MAP_FAILED) return 14;
    for (off_t i = 0; i < st.st_size; ++i) {
      if (p[i] == 0xA5) return 2;  // the victim's bytes
    }
    std::memset(p, 0xEE, static_cast<std::size_t>(st.st_size));  // everything it reaches
    return 0;
  });
  EXPECT_EQ(found, 0) << "1: the fd is larger than the attacker's buffer; 2: it shows the victim's bytes";
  EXPECT_TRUE(holds(*victim_, mine, 0xA5)) << "the attacker's writes reached the victim's buffer";
}

// Before: the attacker kept the fd of a buffer it freed; the victim's next
// buffer got the same range, and the old fd read and wrote it.
TEST_F(MemoryIsolationTest, AnOldFdNeverReachesTheNextOwnersBuffer) {
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto body = [&]() -> int {
      auto c = remote_client::connect(daemon_.socket(), "attacker");
      if (!c) return 10;
      auto id = c->alloc(256 * KiB, {placement::vram(1)});
      if (!id) return 11;
      auto e = c->export_fd(*id);
      if (!e || !c->free(*id)) return 12;
      // Even after release, the fd keeps pages of its own.
      if (!c->release_export(*id)) return 13;
      auto* p = static_cast<std::uint8_t*>(
          ::mmap(nullptr, 256 * KiB, PROT_READ | PROT_WRITE, MAP_SHARED, e->fd, 0));
      if (p == MAP_FAILED) return 14;
      char x = 'r';
      if (::write(ready[1], &x, 1) != 1 || ::read(go[0], &x, 1) != 1) return 15;
      for (std::uint64_t i = 0; i < 256 * KiB; ++i) {
        if (p[i] == 0x5C) return 2;  // the victim's bytes
      }
      std::memset(p, 0x77, 256 * KiB);
      return 0;
    };
    ::_exit(body());
  }
  char x = 0;
  ASSERT_EQ(::read(ready[0], &x, 1), 1) << "the attacker failed before it was ready";
  // The victim fills vram1: one of its buffers gets the attacker's old range.
  std::vector<buffer_id> mine;
  for (int i = 0; i < 4; ++i) {
    mine.push_back(alloc(256 * KiB, placement::vram(1)));
    ASSERT_TRUE(fill(*victim_, mine.back(), 0x5C));
  }
  ASSERT_EQ(::write(go[1], &x, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: the old fd shows the victim's bytes";
  for (auto id : mine) EXPECT_TRUE(holds(*victim_, id, 0x5C)) << "the old fd wrote into the victim's buffer";
}

// Before: a fresh 256 KiB vram1 buffer held all the bytes the previous
// tenant wrote into the buffer it freed.
TEST_F(MemoryIsolationTest, ANewBufferHoldsNoneOfThePreviousTenantsBytes) {
  const int wrote = in_child([&] {
    auto a = client::connect_daemon(daemon_.socket(), "previous");
    if (!a) return 10;
    for (int i = 0; i < 4; ++i) {  // all of vram1, freed again
      auto id = (*a)->alloc({.size = 256 * KiB, .placements = {placement::vram(1)}, .name = "old",
                             .cpu_access = true, .no_evict = false, .alignment = 0});
      if (!id || !fill(**a, *id, 0x3D) || !(*a)->free(*id)) return 11;
    }
    return 0;
  });
  ASSERT_EQ(wrote, 0);
  for (int i = 0; i < 4; ++i) {
    const buffer_id id = alloc(256 * KiB, placement::vram(1));
    EXPECT_TRUE(holds(*victim_, id, 0)) << "buffer " << i << " starts with another tenant's bytes";
  }
}

}  // namespace
}  // namespace xbuf
