// SPDX-License-Identifier: MIT
//
// Stable addresses across moves (DESIGN.md "Client mappings"), in two
// processes against the real xbufd: a job takes a pointer to its buffer
// once; another process's allocations evict the buffer out of VRAM and the
// job's validate promotes it back, 1,000 times. Every time, the job's
// begin_use hands back the same pointer, the buffer is where the daemon
// says, and the bytes through that pointer have the checksum of what the
// job wrote last.
//
// Waits are bounded (the allocator's timeouts, the daemon's fence
// deadline, a poll on the pressure process's pipe); nothing asserts how
// long anything took.
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "client/allocator.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
constexpr int cycles = 1000;

std::uint64_t fnv1a(const void* p, std::uint64_t n) {
  const auto* b = static_cast<const std::uint8_t*>(p);
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint64_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

// Bytes that differ from one cycle to the next everywhere (a stale page
// from an older backing would show).
void fill(void* p, std::uint64_t n, std::uint32_t seed) {
  auto* w = static_cast<std::uint32_t*>(p);
  std::uint32_t x = seed * 2654435761u + 0x9e3779b9u;
  for (std::uint64_t i = 0; i < n / 4; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    w[i] = x;
  }
}

bool read_byte(int fd, char* c, int timeout_ms) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  if (::poll(&p, 1, timeout_ms) != 1) return false;
  return ::read(fd, c, 1) == 1;
}

// The other job, in its own process: on each 'g' from the pipe it
// allocates all of GPU 0's VRAM (VRAM only, so the daemon must evict) and
// frees it, then answers 'd' (or 'e' with the error on stderr). Exits at
// the pipe's end.
[[noreturn]] void pressure_process(const std::string& socket, int go, int done) {
  auto a = client::connect_daemon(socket, "pressure");
  if (!a) {
    std::fprintf(stderr, "pressure: %s\n", a.err().describe().c_str());
    std::_Exit(3);
  }
  char c = 0;
  while (::read(go, &c, 1) == 1) {
    auto big = (*a)->alloc({.size = 1 * MiB, .placements = {placement::vram(0)}, .name = "pressure",
                            .cpu_access = false, .no_evict = false, .alignment = 0});
    status st = big ? (*a)->free(*big) : status(std::move(big).err());
    if (!st) std::fprintf(stderr, "pressure: %s\n", st.err().describe().c_str());
    const char answer = st ? 'd' : 'e';
    if (::write(done, &answer, 1) != 1) std::_Exit(4);
  }
  std::_Exit(0);
}

class StableAddressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<test::scratch_daemon>(
        std::vector<std::string>{"--pageable", "16M", "--promote-interval", "0"});
    ASSERT_TRUE(daemon_->up()) << "xbufd did not come up; log:\n" << daemon_->log();
    socket_ = daemon_->socket();
  }
  void TearDown() override {
    if (go_ >= 0) ::close(go_);
    if (child_ > 0) {
      int st = 0;
      ::waitpid(child_, &st, 0);
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "pressure process status " << st;
    }
    if (done_ >= 0) ::close(done_);
    if (HasFailure()) std::fprintf(stderr, "xbufd log:\n%s\n", daemon_->log().c_str());
    daemon_.reset();
  }

  // Forks the pressure process (before this process has threads of its own).
  void start_pressure() {
    int go[2];
    int done[2];
    ASSERT_EQ(::pipe(go), 0);
    ASSERT_EQ(::pipe(done), 0);
    child_ = ::fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      ::close(go[1]);
      ::close(done[0]);
      pressure_process(socket_, go[0], done[1]);
    }
    ::close(go[0]);
    ::close(done[1]);
    go_ = go[1];
    done_ = done[0];
  }

  // One round of pressure; false with the reason in `why`.
  bool press(std::string* why) {
    const char g = 'g';
    if (::write(go_, &g, 1) != 1) {
      *why = "the pressure process is gone";
      return false;
    }
    char c = 0;
    if (!read_byte(done_, &c, 60'000)) {
      *why = "no answer from the pressure process";
      return false;
    }
    if (c != 'd') *why = "the pressure process's allocation failed (its stderr says why)";
    return c == 'd';
  }

  std::string socket_;
  std::unique_ptr<test::scratch_daemon> daemon_;
  pid_t child_ = -1;
  int go_ = -1;
  int done_ = -1;
};

TEST_F(StableAddressTest, APointerTakenOnceSurvivesAThousandEvictionsAndPromotions) {
  start_pressure();
  auto opened = client::connect_daemon(socket_, "job");
  ASSERT_TRUE(opened) << opened.err().describe();
  client::allocator& a = **opened;
  int moves = 0;
  a.on_move([&](const client::move_event&) { ++moves; });

  const std::uint64_t size = 256 * KiB;
  auto b = a.alloc({.size = size, .placements = {placement::vram(0), placement::pinned()}, .name = "weights",
                    .cpu_access = false, .no_evict = false, .alignment = 0});
  ASSERT_TRUE(b) << b.err().describe();
  auto at = a.attach(*b, 0, attach_mode::dynamic);
  ASSERT_TRUE(at) << at.err().describe();
  auto first = a.begin_use(*at, fence_usage::write);
  ASSERT_TRUE(first) << first.err().describe();
  void* const p = first->data;
  ASSERT_EQ(first->where, placement::vram(0));
  fill(p, size, 0);
  std::uint64_t want = fnv1a(p, size);
  ASSERT_TRUE(a.end_use(*at));

  const buffer_id ids[] = {*b};
  for (int i = 1; i <= cycles; ++i) {
    std::string why;
    ASSERT_TRUE(press(&why)) << "cycle " << i << ": " << why;

    auto evicted = a.begin_use(*at, fence_usage::write);
    ASSERT_TRUE(evicted) << "cycle " << i << ": " << evicted.err().describe();
    ASSERT_EQ(evicted->data, p) << "cycle " << i << ": the address changed after the eviction";
    ASSERT_EQ(evicted->where, placement::pinned()) << "cycle " << i;
    ASSERT_EQ(fnv1a(p, size), want) << "cycle " << i << ": bytes changed by the eviction";
    fill(p, size, static_cast<std::uint32_t>(i));
    want = fnv1a(p, size);
    ASSERT_TRUE(a.end_use(*at));

    auto val = a.validate(ids);
    ASSERT_TRUE(val) << "cycle " << i << ": " << val.err().describe();
    ASSERT_EQ(val->promoted, 1u) << "cycle " << i;

    auto promoted = a.begin_use(*at, fence_usage::read);
    ASSERT_TRUE(promoted) << "cycle " << i << ": " << promoted.err().describe();
    ASSERT_EQ(promoted->data, p) << "cycle " << i << ": the address changed after the promotion";
    ASSERT_EQ(promoted->where, placement::vram(0)) << "cycle " << i;
    ASSERT_EQ(fnv1a(p, size), want) << "cycle " << i << ": bytes changed by the promotion";
    ASSERT_TRUE(a.end_use(*at));
  }
  (void)a.poll_events(200ms);
  EXPECT_GE(moves, 2 * cycles) << "every eviction and promotion is a move_notify";

  // The daemon counted the same moves.
  auto s = a.stats();
  ASSERT_TRUE(s) << s.err().describe();
  std::uint64_t notifies = 0;
  for (const auto& c : s->counters) {
    if (c.name == "move_notifies") notifies = c.value;
  }
  EXPECT_GE(notifies, static_cast<std::uint64_t>(2 * cycles));
}

}  // namespace
}  // namespace xbuf
