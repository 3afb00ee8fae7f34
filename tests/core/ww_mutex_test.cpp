// SPDX-License-Identifier: MIT
// Behaviour of the wait-die mutex and acquire contexts (core/ww_mutex.hpp).
#include "core/ww_mutex.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace xbuf {
namespace {

using namespace std::chrono_literals;

// Long enough that a thread that should be blocked would have finished if it
// were not; the tests never depend on it being short.
constexpr auto settle = 50ms;
// Generous upper bound for things that must happen, so a hung lock fails the
// test instead of hanging CI.
constexpr auto must_happen_within = 10s;

// Spins (politely) until `pred` is true or the bound passes.
template <class Pred>
bool eventually(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + must_happen_within;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

TEST(WwMutexTest, StampsIncreaseInCreationOrder) {
  ww_acquire_ctx first;
  ww_acquire_ctx second;
  EXPECT_LT(first.stamp(), second.stamp()) << "a context created earlier is older";
}

TEST(WwMutexTest, LockWithContextRecordsHolderAndUnlockForgetsIt) {
  ww_mutex m;
  ww_acquire_ctx ctx;
  ASSERT_TRUE(m.lock(ctx));
  EXPECT_TRUE(m.is_locked());
  EXPECT_TRUE(m.held_by(ctx));
  EXPECT_TRUE(m.held_by_this_thread());
  EXPECT_EQ(ctx.held_count(), 1u);
  m.assert_held();
  m.unlock();
  EXPECT_FALSE(m.is_locked());
  EXPECT_FALSE(m.held_by(ctx));
  EXPECT_EQ(ctx.held_count(), 0u);
}

TEST(WwMutexTest, LockTwiceWithSameContextReportsAlreadyExists) {
  ww_mutex m;
  ww_acquire_ctx ctx;
  ASSERT_TRUE(m.lock(ctx));
  auto again = m.lock(ctx);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.code(), errc::already_exists);
  EXPECT_EQ(ctx.held_count(), 1u) << "a refused re-lock must not be recorded twice";
  ctx.unlock_all();
  EXPECT_FALSE(m.is_locked());
}

TEST(WwMutexTest, YoungerContextBacksOffWhenOlderHoldsLock) {
  ww_mutex a;
  ww_mutex b;
  ww_acquire_ctx older;
  ww_acquire_ctx younger;
  ASSERT_TRUE(a.lock(older));
  ASSERT_TRUE(b.lock(younger));
  auto s = a.lock(younger);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::would_deadlock);
  EXPECT_NE(s.err().message.find("older"), std::string::npos) << s.err().message;
  EXPECT_EQ(younger.contended(), &a);
  EXPECT_EQ(younger.backoffs(), 1u);
  EXPECT_TRUE(a.held_by(older)) << "backing off must not disturb the holder";
  EXPECT_EQ(younger.held_count(), 1u) << "the caller drops its own locks, not lock()";
  younger.unlock_all();
  older.unlock_all();
}

TEST(WwMutexTest, OlderContextWaitsForYoungerHolder) {
  ww_mutex a;
  ww_mutex b;
  ww_acquire_ctx older;
  ww_acquire_ctx younger;
  ASSERT_TRUE(a.lock(younger));
  std::atomic<bool> got_it{false};
  auto waiter = std::async(std::launch::async, [&] {
    EXPECT_TRUE(b.lock(older));
    status s = a.lock(older);  // must wait, not back off
    got_it = true;
    older.unlock_all();
    return s.code();
  });
  std::this_thread::sleep_for(settle);
  EXPECT_FALSE(got_it.load()) << "older context took a lock the younger one still holds";
  younger.unlock_all();
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::ok);
}

TEST(WwMutexTest, YoungerContextHoldingNothingWaitsInsteadOfBackingOff) {
  ww_mutex a;
  ww_acquire_ctx older;
  ww_acquire_ctx younger;
  ASSERT_TRUE(a.lock(older));
  std::atomic<bool> got_it{false};
  auto waiter = std::async(std::launch::async, [&] {
    status s = a.lock(younger);  // holds nothing: cannot close a cycle, so it waits
    got_it = true;
    younger.unlock_all();
    return s.code();
  });
  std::this_thread::sleep_for(settle);
  EXPECT_FALSE(got_it.load());
  older.unlock_all();
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::ok);
  EXPECT_EQ(younger.backoffs(), 0u);
}

TEST(WwMutexTest, LockSlowAfterBackOffWaitsForContendedLockThenRestSucceeds) {
  ww_mutex a;
  ww_mutex b;
  ww_acquire_ctx older;
  ww_acquire_ctx younger;
  ASSERT_TRUE(a.lock(older));
  std::atomic<bool> slow_locked{false};
  auto dance = std::async(std::launch::async, [&] {
    EXPECT_TRUE(b.lock(younger));
    status s = a.lock(younger);
    EXPECT_EQ(s.code(), errc::would_deadlock);
    younger.unlock_all();
    status slow = younger.contended()->lock_slow(younger);
    slow_locked = true;
    EXPECT_TRUE(b.lock(younger));
    const bool both = a.held_by(younger) && b.held_by(younger);
    younger.unlock_all();
    return slow.has_value() && both;
  });
  // While the younger context sleeps in lock_slow it must hold nothing.
  ASSERT_TRUE(eventually([&] { return !b.is_locked(); }));
  std::this_thread::sleep_for(settle);
  EXPECT_FALSE(slow_locked.load());
  EXPECT_FALSE(b.is_locked()) << "a backed-off context must wait holding nothing";
  older.unlock_all();
  ASSERT_EQ(dance.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_TRUE(dance.get());
}

TEST(WwMutexTest, PlainLockWaitsForContextHolder) {
  ww_mutex m;
  ww_acquire_ctx ctx;
  ASSERT_TRUE(m.lock(ctx));
  std::atomic<bool> got_it{false};
  auto waiter = std::async(std::launch::async, [&] {
    m.lock();
    got_it = true;
    const bool mine = m.held_by_this_thread() && !m.held_by(ctx);
    m.unlock();
    return mine;
  });
  std::this_thread::sleep_for(settle);
  EXPECT_FALSE(got_it.load());
  ctx.unlock_all();
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_TRUE(waiter.get());
}

TEST(WwMutexTest, ContextWaitsForPlainHolderEvenWhenHoldingOtherLocks) {
  ww_mutex a;
  ww_mutex b;
  a.lock();  // context-free holder: holds nothing else, so waiting is safe
  ww_acquire_ctx ctx;
  auto waiter = std::async(std::launch::async, [&] {
    EXPECT_TRUE(b.lock(ctx));
    status s = a.lock(ctx);
    ctx.unlock_all();
    return s.code();
  });
  std::this_thread::sleep_for(settle);
  a.unlock();
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::ok);
}

TEST(WwMutexTest, StdLockGuardWorksForThePlainPath) {
  ww_mutex m;
  {
    std::lock_guard guard(m);
    EXPECT_TRUE(m.held_by_this_thread());
  }
  EXPECT_FALSE(m.is_locked());
}

TEST(WwMutexTest, TrylockFailsWhileLockedWithoutBlocking) {
  ww_mutex m;
  m.lock();
  auto other = std::async(std::launch::async, [&] { return m.trylock(); });
  ASSERT_EQ(other.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_FALSE(other.get());
  m.unlock();
  ASSERT_TRUE(m.trylock());
  EXPECT_TRUE(m.held_by_this_thread());
  m.unlock();
}

TEST(WwMutexTest, TrylockWithContextReportsBusyThenAlreadyExists) {
  ww_mutex m;
  ww_acquire_ctx holder;
  ww_acquire_ctx evictor;
  ASSERT_TRUE(m.trylock(holder));
  EXPECT_TRUE(m.held_by(holder));
  EXPECT_EQ(holder.held_count(), 1u);

  auto busy = m.trylock(evictor);
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.code(), errc::busy);
  EXPECT_EQ(evictor.held_count(), 0u);

  auto mine = m.trylock(holder);
  ASSERT_FALSE(mine);
  EXPECT_EQ(mine.code(), errc::already_exists);
  holder.unlock_all();
  EXPECT_FALSE(m.is_locked());
}

TEST(WwMutexTest, TrylockNeverBacksOffEvenAgainstOlderHolder) {
  ww_mutex a;
  ww_mutex b;
  ww_acquire_ctx older;
  ww_acquire_ctx younger;
  ASSERT_TRUE(a.lock(older));
  ASSERT_TRUE(b.lock(younger));
  auto s = a.trylock(younger);
  EXPECT_EQ(s.code(), errc::busy);
  EXPECT_EQ(younger.backoffs(), 0u);
  EXPECT_EQ(younger.contended(), nullptr) << "a trylock failure demands no back-off dance";
  younger.unlock_all();
  older.unlock_all();
}

TEST(WwMutexTest, CancelledLockWaitReturnsCancelledAndHoldsNothing) {
  ww_mutex m;
  m.lock();
  cancel_token token;
  ww_acquire_ctx ctx;
  std::atomic<bool> waiting{false};
  auto waiter = std::async(std::launch::async, [&] {
    waiting = true;
    status s = m.lock(ctx, &token);
    return s.code();
  });
  ASSERT_TRUE(eventually([&] { return waiting.load(); }));
  std::this_thread::sleep_for(settle);
  token.cancel();
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::cancelled);
  EXPECT_EQ(ctx.held_count(), 0u);
  EXPECT_TRUE(m.held_by_this_thread()) << "cancelling a waiter must not disturb the holder";
  m.unlock();
}

TEST(WwMutexTest, CancelledPlainLockWaitReturnsCancelled) {
  ww_mutex m;
  m.lock();
  cancel_token token;
  auto waiter = std::async(std::launch::async, [&] { return m.lock(&token).code(); });
  std::this_thread::sleep_for(settle);
  token.cancel();
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::cancelled);
  m.unlock();
  EXPECT_FALSE(m.is_locked());
}

TEST(WwMutexTest, AlreadyCancelledTokenFailsAContendedLockAtOnce) {
  ww_mutex m;
  m.lock();
  cancel_token token;
  token.cancel();
  ww_acquire_ctx ctx;
  auto waiter = std::async(std::launch::async, [&] { return m.lock(ctx, &token).code(); });
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::cancelled);
  m.unlock();
}

TEST(WwMutexTest, FreeLockIsTakenEvenWithCancelledToken) {
  // Like a kernel mutex_lock_interruptible with a signal pending: an
  // uncontended lock is taken; cancellation only interrupts waiting.
  ww_mutex m;
  cancel_token token;
  token.cancel();
  ww_acquire_ctx ctx;
  EXPECT_TRUE(m.lock(ctx, &token));
  EXPECT_TRUE(m.held_by(ctx));
  ctx.unlock_all();
}

TEST(WwMutexTest, UnlockAllReleasesEveryHeldLock) {
  std::vector<ww_mutex> locks(5);
  ww_acquire_ctx ctx;
  for (auto& m : locks) ASSERT_TRUE(m.lock(ctx));
  EXPECT_EQ(ctx.held_count(), locks.size());
  ctx.unlock_all();
  EXPECT_EQ(ctx.held_count(), 0u);
  for (auto& m : locks) EXPECT_FALSE(m.is_locked());
}

TEST(WwMutexTest, UnlockOutOfOrderKeepsTheRestRecorded) {
  ww_mutex a;
  ww_mutex b;
  ww_mutex c;
  ww_acquire_ctx ctx;
  ASSERT_TRUE(a.lock(ctx));
  ASSERT_TRUE(b.lock(ctx));
  ASSERT_TRUE(c.lock(ctx));
  b.unlock();
  EXPECT_EQ(ctx.held_count(), 2u);
  EXPECT_TRUE(a.held_by(ctx));
  EXPECT_TRUE(c.held_by(ctx));
  ctx.unlock_all();
  EXPECT_FALSE(a.is_locked());
  EXPECT_FALSE(c.is_locked());
}

TEST(WwMutexTest, DoneContextCanStillUnlock) {
  ww_mutex m;
  ww_acquire_ctx ctx;
  ASSERT_TRUE(m.lock(ctx));
  ctx.done();
  EXPECT_TRUE(ctx.is_done());
  ctx.unlock_all();
  EXPECT_FALSE(m.is_locked());
}

TEST(WwMutexTest, LockAllLocksEveryMemberInGivenOrder) {
  ww_mutex a;
  ww_mutex b;
  ww_mutex c;
  ww_acquire_ctx ctx;
  std::vector<ww_mutex*> set{&c, &a, &b};
  ASSERT_TRUE(lock_all(ctx, set));
  EXPECT_TRUE(a.held_by(ctx));
  EXPECT_TRUE(b.held_by(ctx));
  EXPECT_TRUE(c.held_by(ctx));
  EXPECT_EQ(ctx.held_count(), 3u);
  ctx.unlock_all();
}

TEST(WwMutexTest, LockAllToleratesDuplicates) {
  ww_mutex a;
  ww_mutex b;
  ww_acquire_ctx ctx;
  std::vector<ww_mutex*> set{&a, &b, &a};
  ASSERT_TRUE(lock_all(ctx, set));
  EXPECT_EQ(ctx.held_count(), 2u);
  ctx.unlock_all();
}

TEST(WwMutexTest, LockAllRejectsNullEntryAndHoldsNothing) {
  ww_mutex a;
  ww_acquire_ctx ctx;
  std::vector<ww_mutex*> set{&a, nullptr};
  auto s = lock_all(ctx, set);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::invalid_argument);
  EXPECT_NE(s.err().message.find("entry 1"), std::string::npos) << s.err().message;
  EXPECT_EQ(ctx.held_count(), 0u);
  EXPECT_FALSE(a.is_locked());
}

TEST(WwMutexTest, LockAllRejectsContextThatAlreadyHoldsLocks) {
  ww_mutex a;
  ww_mutex b;
  ww_acquire_ctx ctx;
  ASSERT_TRUE(a.lock(ctx));
  std::vector<ww_mutex*> set{&b};
  auto s = lock_all(ctx, set);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::bad_state);
  EXPECT_TRUE(a.held_by(ctx)) << "a refused lock_all must leave earlier locks alone";
  EXPECT_FALSE(b.is_locked());
  ctx.unlock_all();
}

TEST(WwMutexTest, LockAllBacksOffDropsItsLocksAndRetriesWhenOlderHoldsAMember) {
  ww_mutex a;
  ww_mutex b;
  ww_mutex c;
  ww_acquire_ctx older;
  ww_acquire_ctx younger;
  ASSERT_TRUE(c.lock(older));
  auto job = std::async(std::launch::async, [&] {
    std::vector<ww_mutex*> set{&a, &b, &c};
    status s = lock_all(younger, set);
    const bool all = a.held_by(younger) && b.held_by(younger) && c.held_by(younger);
    const auto backoffs = younger.backoffs();
    younger.unlock_all();
    return std::make_tuple(s.code(), all, backoffs);
  });
  // The younger context must back off on c and then wait holding nothing.
  ASSERT_TRUE(eventually([&] { return younger.backoffs() > 0 || job.wait_for(0s) == std::future_status::ready; }));
  ASSERT_TRUE(eventually([&] { return !a.is_locked() && !b.is_locked(); }));
  older.unlock_all();
  ASSERT_EQ(job.wait_for(must_happen_within), std::future_status::ready);
  auto [code, all, backoffs] = job.get();
  EXPECT_EQ(code, errc::ok);
  EXPECT_TRUE(all);
  EXPECT_GE(backoffs, 1u);
}

TEST(WwMutexTest, LockAllCancelledWhileWaitingReleasesEverything) {
  ww_mutex a;
  ww_mutex b;
  b.lock();  // held context-free, so lock_all waits on it
  cancel_token token;
  ww_acquire_ctx ctx;
  auto job = std::async(std::launch::async, [&] {
    std::vector<ww_mutex*> set{&a, &b};
    status s = lock_all(ctx, set, &token);
    return std::make_pair(s.code(), ctx.held_count());
  });
  ASSERT_TRUE(eventually([&] { return a.is_locked(); }));
  token.cancel();
  ASSERT_EQ(job.wait_for(must_happen_within), std::future_status::ready);
  auto [code, held] = job.get();
  EXPECT_EQ(code, errc::cancelled);
  EXPECT_EQ(held, 0u);
  EXPECT_FALSE(a.is_locked()) << "a cancelled lock_all must drop what it took";
  b.unlock();
}

TEST(WwMutexTest, TwoContextsLockingInOppositeOrderBothFinish) {
  // The textbook ABBA deadlock, repeated: with wait-die both always finish.
  ww_mutex a;
  ww_mutex b;
  std::atomic<std::uint64_t> backoffs{0};
  auto run = [&](ww_mutex* first, ww_mutex* second) {
    for (int i = 0; i < 2000; ++i) {
      ww_acquire_ctx ctx;
      std::vector<ww_mutex*> set{first, second};
      if (!lock_all(ctx, set)) return false;
      ctx.done();
      ctx.unlock_all();
      backoffs += ctx.backoffs();
    }
    return true;
  };
  auto t1 = std::async(std::launch::async, run, &a, &b);
  auto t2 = std::async(std::launch::async, run, &b, &a);
  ASSERT_EQ(t1.wait_for(must_happen_within * 3), std::future_status::ready);
  ASSERT_EQ(t2.wait_for(must_happen_within * 3), std::future_status::ready);
  EXPECT_TRUE(t1.get());
  EXPECT_TRUE(t2.get());
  EXPECT_FALSE(a.is_locked());
  EXPECT_FALSE(b.is_locked());
  RecordProperty("backoffs", std::to_string(backoffs.load()));
}

// --- Misuse is caught by debug-build assertions (no-ops with NDEBUG). ---

class WwMutexDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(WwMutexDeathTest, UnlockByNonHolderThreadAsserts) {
  ww_mutex m;
  m.lock();
  EXPECT_DEBUG_DEATH(std::thread([&] { m.unlock(); }).join(), "does not hold");
  if (m.is_locked()) m.unlock();
}

TEST_F(WwMutexDeathTest, ContextDestroyedWithLocksHeldAsserts) {
  ww_mutex m;
  EXPECT_DEBUG_DEATH(
      {
        ww_acquire_ctx ctx;
        (void)m.lock(ctx);
      },
      "unlock_all");
  // Release builds: the context's destructor released the lock.
  if (m.is_locked()) m.unlock();
}

TEST_F(WwMutexDeathTest, LockingOnWithoutDroppingAfterBackOffAsserts) {
  ww_mutex a;
  ww_mutex b;
  ww_mutex c;
  ww_acquire_ctx older;
  ww_acquire_ctx younger;
  ASSERT_TRUE(a.lock(older));
  ASSERT_TRUE(b.lock(younger));
  ASSERT_EQ(a.lock(younger).code(), errc::would_deadlock);
  EXPECT_DEBUG_DEATH((void)c.lock(younger), "would_deadlock");
  younger.unlock_all();
  older.unlock_all();
}

}  // namespace
}  // namespace xbuf
