// SPDX-License-Identifier: MIT
// The deadline watchdog forces fences that depend on a client
// (allocator/deadline_watchdog.hpp), alone and racing the client's signals.
#include "allocator/deadline_watchdog.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <future>
#include <memory>
#include <random>
#include <thread>
#include <vector>

namespace xbuf {
namespace {

using namespace std::chrono_literals;

fence_ptr make_fence() { return fence::create(fence::allocate_context(), 1); }

int rounds(int base) {
  if (const char* s = std::getenv("XBUF_STRESS_SECONDS")) return base * std::max(1, std::atoi(s));
  return base;
}

TEST(DeadlineWatchdogTest, SignalsAFenceWithEtimedoutWhenItsDeadlinePasses) {
  std::promise<fence_ptr> expired;
  deadline_watchdog dog([&](const fence_ptr& f) { expired.set_value(f); });
  auto f = make_fence();
  dog.watch(f, fence_clock::now() + 10ms);
  auto fut = expired.get_future();
  ASSERT_EQ(fut.wait_for(10s), std::future_status::ready);
  EXPECT_EQ(fut.get(), f);
  EXPECT_TRUE(f->is_signaled());
  EXPECT_EQ(f->error(), -ETIMEDOUT);
  EXPECT_EQ(dog.expired_count(), 1u);
  EXPECT_EQ(dog.pending(), 0u);
}

TEST(DeadlineWatchdogTest, AFenceSignaledInTimeIsNotExpired) {
  std::atomic<int> expirations{0};
  deadline_watchdog dog([&](const fence_ptr&) { ++expirations; });
  auto in_time = make_fence();
  auto late = make_fence();
  dog.watch(in_time, fence_clock::now() + 20ms);
  dog.watch(late, fence_clock::now() + 30ms);
  EXPECT_EQ(dog.pending(), 2u);
  ASSERT_TRUE(in_time->signal());
  ASSERT_TRUE(late->wait(10s));
  EXPECT_EQ(in_time->error(), 0);
  EXPECT_EQ(late->error(), -ETIMEDOUT);
  // The expiry callback runs just after the signal; wait for the count.
  for (int i = 0; i < 1000 && dog.expired_count() < 1; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(dog.expired_count(), 1u);
  EXPECT_EQ(expirations.load(), 1);
}

TEST(DeadlineWatchdogTest, EarlierDeadlineAddedLaterIsHonoured) {
  deadline_watchdog dog;
  auto far = make_fence();
  auto near = make_fence();
  dog.watch(far, fence_clock::now() + 1h);
  dog.watch(near, fence_clock::now() + 5ms);
  EXPECT_TRUE(near->wait(10s)) << "the watchdog must wake for a new earliest deadline";
  EXPECT_EQ(near->error(), -ETIMEDOUT);
  EXPECT_FALSE(far->is_signaled());
}

TEST(DeadlineWatchdogTest, RacingClientSignals) {
  std::atomic<std::uint64_t> expirations{0};
  auto dog = std::make_unique<deadline_watchdog>([&](const fence_ptr&) { ++expirations; });
  const int n = rounds(2000);
  std::vector<fence_ptr> fs;
  std::mt19937 rng(42);
  for (int i = 0; i < n; ++i) {
    auto f = fence::create(fence::allocate_context(), 1);
    dog->watch(f, fence_clock::now() + std::chrono::microseconds(rng() % 2000));
    fs.push_back(f);
  }
  std::thread client([&] {
    for (std::size_t i = 0; i < fs.size(); i += 2) (void)fs[i]->signal();
  });
  client.join();
  ASSERT_TRUE(wait_all(fs, 30s));
  // The watchdog reports an expiry just after signaling it: count once its
  // thread has stopped.
  const auto counted = dog->expired_count();
  dog.reset();
  std::size_t timed_out = 0;
  for (auto& f : fs) {
    ASSERT_TRUE(f->error() == 0 || f->error() == -ETIMEDOUT);
    if (f->error() == -ETIMEDOUT) ++timed_out;
  }
  EXPECT_LE(counted, timed_out);
  EXPECT_EQ(timed_out, expirations.load()) << "every -ETIMEDOUT came from the watchdog, once";
  EXPECT_GE(timed_out, fs.size() / 2) << "fences nobody signaled must expire";
}

}  // namespace
}  // namespace xbuf
