// SPDX-License-Identifier: MIT
// One pipelined move (allocator/move_job.hpp) on a real sim backend: it waits
// for the buffer's fences, copies, retries failed copies, and reports loss.
#include "allocator/move_job.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>

#include "backends/sim/sim_backend.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;
constexpr std::size_t bytes = 64 * 1024;

struct MoveJobTest : ::testing::Test {
  std::unique_ptr<sim_backend> sim;
  memory_span src, dst;

  void SetUp() override {
    auto s = create_sim_backend(make_sim_config(1, 1 << 20));
    ASSERT_TRUE(s) << s.err().describe();
    sim = std::move(*s);
    auto v = sim->allocate_device(0, bytes);
    auto h = sim->allocate_host(bytes, false);
    ASSERT_TRUE(v && h);
    src = memory_span{*v, 0, bytes};
    dst = memory_span{*h, 0, bytes};
    std::memset(src.block->host_ptr, 0x5a, bytes);
    std::memset(dst.block->host_ptr, 0, bytes);
  }
  bool copied() const { return std::memcmp(src.block->host_ptr, dst.block->host_ptr, bytes) == 0; }
};

TEST_F(MoveJobTest, CopiesOnlyAfterEveryAwaitedFence) {
  auto reader = fence::create(fence::allocate_context(), 1);
  std::atomic<int> done{-1};
  auto moved = move_job::start(*sim, dst, src, {reader, fence::signaled()}, 0,
                               [&](int e) { done = e; });
  EXPECT_FALSE(moved->wait(20ms)) << "the move must wait for the reader";
  EXPECT_FALSE(copied());
  ASSERT_TRUE(reader->signal());
  ASSERT_TRUE(moved->wait(10s));
  EXPECT_EQ(moved->error(), 0);
  EXPECT_EQ(done.load(), 0);
  EXPECT_TRUE(copied());
}

TEST_F(MoveJobTest, AFailedAwaitedFenceDoesNotStopTheMove) {
  auto writer = fence::create(fence::allocate_context(), 1);
  auto moved = move_job::start(*sim, dst, src, {writer}, 0);
  ASSERT_TRUE(writer->signal(-EIO));
  ASSERT_TRUE(moved->wait(10s));
  EXPECT_EQ(moved->error(), 0);
  EXPECT_TRUE(copied());
}

TEST_F(MoveJobTest, FailedCopiesAreRetried) {
  ASSERT_TRUE(sim->fail_next_copies(0, 2));
  std::atomic<int> done{-1};
  auto moved = move_job::start(*sim, dst, src, {}, 2, [&](int e) { done = e; });
  ASSERT_TRUE(moved->wait(10s));
  EXPECT_EQ(moved->error(), 0) << "third try succeeds";
  EXPECT_EQ(done.load(), 0);
  EXPECT_TRUE(copied());
}

TEST_F(MoveJobTest, EveryTryFailingSignalsTheLastErrorAndReportsIt) {
  ASSERT_TRUE(sim->fail_next_copies(0, 3));
  std::atomic<int> done{1};
  auto moved = move_job::start(*sim, dst, src, {}, 2, [&](int e) { done = e; });
  ASSERT_TRUE(moved->wait(10s));
  EXPECT_EQ(moved->error(), -EIO);
  EXPECT_EQ(done.load(), -EIO) << "the owner learns the contents are lost";
}

// The destination may have held another buffer: a move that failed for
// good leaves zeros there, never the previous owner's bytes.
TEST_F(MoveJobTest, EveryTryFailingLeavesTheDestinationZeroedNotItsOldBytes) {
  std::memset(dst.block->host_ptr, 0x77, bytes);
  ASSERT_TRUE(sim->fail_next_copies(0, 3));
  auto moved = move_job::start(*sim, dst, src, {}, 2);
  ASSERT_TRUE(moved->wait(10s));
  EXPECT_EQ(moved->error(), -EIO);
  const auto* p = static_cast<const unsigned char*>(dst.block->host_ptr);
  EXPECT_EQ(std::count(p, p + bytes, 0), static_cast<std::ptrdiff_t>(bytes));
}

// The copy writes the buffer's bytes; the rest of the page an export of the
// destination maps is zeroed before the move fence signals.
TEST_F(MoveJobTest, TheDestinationsPaddingIsZeroedBeforeTheMoveSignals) {
  constexpr std::size_t n = bytes - 100;
  std::memset(dst.block->host_ptr, 0x77, bytes);
  auto moved = move_job::start(*sim, memory_span{dst.block, 0, n}, memory_span{src.block, 0, n}, {}, 0);
  ASSERT_TRUE(moved->wait(10s));
  EXPECT_EQ(moved->error(), 0);
  const auto* p = static_cast<const unsigned char*>(dst.block->host_ptr);
  EXPECT_EQ(std::count(p, p + n, 0x5a), static_cast<std::ptrdiff_t>(n)) << "the buffer's bytes";
  EXPECT_EQ(std::count(p + n, p + bytes, 0), 100) << "the padding keeps old bytes";
}

}  // namespace
}  // namespace xbuf
