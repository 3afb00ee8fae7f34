// SPDX-License-Identifier: MIT
// Acting once a set of fences signaled (core/fence_join.hpp).
#include "core/fence_join.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>
#include <vector>

namespace xbuf {
namespace {

using namespace std::chrono_literals;

fence_ptr make_fence() { return fence::create(fence::allocate_context(), 1); }

TEST(FenceJoinTest, WhenAllSignaledRunsOnceAfterTheLastFence) {
  auto a = make_fence();
  auto b = make_fence();
  std::atomic<int> runs{0};
  std::atomic<int> error{1};
  when_all_signaled({a, b, nullptr}, [&](int e) {
    error = e;
    ++runs;
  });
  ASSERT_TRUE(a->signal());
  EXPECT_EQ(runs.load(), 0) << "b is still pending";
  ASSERT_TRUE(b->signal());
  EXPECT_EQ(runs.load(), 1);
  EXPECT_EQ(error.load(), 0);
}

TEST(FenceJoinTest, WhenAllSignaledRunsAtOnceForSignaledOrEmptySets) {
  int runs = 0;
  when_all_signaled({}, [&](int) { ++runs; });
  when_all_signaled({fence::signaled(), fence::signaled()}, [&](int) { ++runs; });
  EXPECT_EQ(runs, 2);
}

TEST(FenceJoinTest, WhenAllSignaledReportsTheFirstError) {
  auto a = make_fence();
  auto b = make_fence();
  std::atomic<int> error{0};
  when_all_signaled({a, b}, [&](int e) { error = e; });
  ASSERT_TRUE(b->signal(-EIO));
  ASSERT_TRUE(a->signal(-ENODEV));
  EXPECT_EQ(error.load(), -EIO) << "b signaled first";
}

TEST(FenceJoinTest, JoinSignalsWhenAllDoWithTheError) {
  auto a = make_fence();
  auto b = make_fence();
  auto joined = join({a, b});
  EXPECT_FALSE(joined->is_signaled());
  ASSERT_TRUE(a->signal());
  EXPECT_FALSE(joined->is_signaled());
  ASSERT_TRUE(b->signal(-EIO));
  ASSERT_TRUE(joined->wait(1s));
  EXPECT_EQ(joined->error(), -EIO);
}

TEST(FenceJoinTest, JoinOfOneIsThatFenceAndOfNoneIsSignaled) {
  auto a = make_fence();
  EXPECT_EQ(join({a}), a);
  auto none = join({});
  EXPECT_TRUE(none->is_signaled());
  EXPECT_EQ(none->error(), 0);
}

TEST(FenceJoinTest, ConcurrentSignalsRunTheFunctionExactlyOnce) {
  for (int round = 0; round < 200; ++round) {
    std::vector<fence_ptr> fs;
    for (int i = 0; i < 8; ++i) fs.push_back(make_fence());
    std::atomic<int> runs{0};
    when_all_signaled(fs, [&](int) { ++runs; });
    std::vector<std::thread> ts;
    for (auto& f : fs) ts.emplace_back([f] { (void)f->signal(); });
    for (auto& t : ts) t.join();
    ASSERT_EQ(runs.load(), 1) << "round " << round;
  }
}

}  // namespace
}  // namespace xbuf
