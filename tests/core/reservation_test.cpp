// SPDX-License-Identifier: MIT
// Behaviour of reservations: reserve-then-add, usages, pruning, lock-free
// snapshots and waits (core/reservation.hpp).
#include "core/reservation.hpp"
#include "core/timeline.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <future>
#include <limits>
#include <thread>
#include <vector>

namespace xbuf {
namespace {

using namespace std::chrono_literals;

constexpr auto settle = 50ms;
constexpr auto must_happen_within = 10s;

fence_ptr make_fence() { return fence::create(fence::allocate_context(), 1); }

bool contains(const std::vector<fence_ptr>& list, const fence_ptr& f) {
  return std::find(list.begin(), list.end(), f) != list.end();
}

// Locks `r` plainly, reserves one slot and adds `f`.
void add_locked(reservation& r, const fence_ptr& f, fence_usage usage) {
  std::lock_guard guard(r.mutex());
  ASSERT_TRUE(r.reserve_fences(1));
  r.add_fence(f, usage);
}

// A backend-style fence: completion is learnt by polling "hardware".
class polled_fence final : public fence {
 public:
  static std::shared_ptr<polled_fence> make() {
    return std::shared_ptr<polled_fence>(new polled_fence());
  }
  std::atomic<bool> hw_done{false};

 private:
  polled_fence() : fence(fence::allocate_context(), 1) {}
  std::optional<int> do_poll() const noexcept override {
    if (hw_done.load()) return 0;
    return std::nullopt;
  }
};

TEST(ReservationTest, UsageNamesAreStable) {
  EXPECT_EQ(to_string(fence_usage::kernel), "kernel");
  EXPECT_EQ(to_string(fence_usage::write), "write");
  EXPECT_EQ(to_string(fence_usage::read), "read");
  EXPECT_EQ(to_string(fence_usage::bookkeep), "bookkeep");
  EXPECT_LT(fence_usage::kernel, fence_usage::write);
  EXPECT_LT(fence_usage::write, fence_usage::read);
  EXPECT_LT(fence_usage::read, fence_usage::bookkeep);
}

TEST(ReservationTest, NewReservationHasNoFencesAndCountsAsSignaled) {
  reservation r;
  EXPECT_EQ(r.fence_count(), 0u);
  EXPECT_TRUE(r.fences().empty());
  EXPECT_TRUE(r.test_signaled(fence_usage::bookkeep));
  EXPECT_TRUE(r.wait(fence_usage::bookkeep, 0s));
  EXPECT_FALSE(r.mutex().is_locked());
}

TEST(ReservationTest, ReserveWithoutLockReportsBadState) {
  reservation r;
  auto s = r.reserve_fences(1);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::bad_state);
  EXPECT_NE(s.err().message.find("reservation"), std::string::npos) << s.err().message;
  EXPECT_NE(s.err().message.find("lock"), std::string::npos) << s.err().message;
}

TEST(ReservationTest, ReserveWhileAnotherThreadHoldsTheLockReportsBadState) {
  reservation r;
  r.mutex().lock();
  auto other = std::async(std::launch::async, [&] { return r.reserve_fences(1).code(); });
  ASSERT_EQ(other.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(other.get(), errc::bad_state) << "the lock must be held by the caller, not just by someone";
  r.mutex().unlock();
}

TEST(ReservationTest, ReserveGuaranteesSlotsAndEachAddUsesOne) {
  reservation r;
  std::lock_guard guard(r.mutex());
  ASSERT_TRUE(r.reserve_fences(3));
  EXPECT_EQ(r.reserved_slots(), 3u);
  r.add_fence(make_fence(), fence_usage::read);
  EXPECT_EQ(r.reserved_slots(), 2u);
  r.add_fence(make_fence(), fence_usage::read);
  r.add_fence(make_fence(), fence_usage::write);
  EXPECT_EQ(r.reserved_slots(), 0u);
  EXPECT_EQ(r.fence_count(), 3u);
}

TEST(ReservationTest, SmallerReserveKeepsTheLargerGuarantee) {
  reservation r;
  std::lock_guard guard(r.mutex());
  ASSERT_TRUE(r.reserve_fences(4));
  ASSERT_TRUE(r.reserve_fences(1));
  EXPECT_EQ(r.reserved_slots(), 4u);
}

TEST(ReservationTest, ReserveZeroIsANoOp) {
  reservation r;
  std::lock_guard guard(r.mutex());
  EXPECT_TRUE(r.reserve_fences(0));
  EXPECT_EQ(r.reserved_slots(), 0u);
}

TEST(ReservationTest, ReserveAnAbsurdCountReportsOutOfMemory) {
  reservation r;
  std::lock_guard guard(r.mutex());
  ASSERT_TRUE(r.reserve_fences(1));
  r.add_fence(make_fence(), fence_usage::read);
  auto s = r.reserve_fences(std::numeric_limits<std::size_t>::max());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::out_of_memory);
  EXPECT_EQ(r.fence_count(), 1u) << "a failed reserve must keep the fences";
}

TEST(ReservationTest, FencesSnapshotFiltersByUsage) {
  reservation r;
  auto k = make_fence();
  auto w = make_fence();
  auto rd = make_fence();
  auto b = make_fence();
  {
    std::lock_guard guard(r.mutex());
    ASSERT_TRUE(r.reserve_fences(4));
    r.add_fence(b, fence_usage::bookkeep);
    r.add_fence(rd, fence_usage::read);
    r.add_fence(w, fence_usage::write);
    r.add_fence(k, fence_usage::kernel);
  }
  auto kernel = r.fences(fence_usage::kernel);
  EXPECT_EQ(kernel.size(), 1u);
  EXPECT_TRUE(contains(kernel, k));
  auto write = r.fences(fence_usage::write);
  EXPECT_EQ(write.size(), 2u);
  EXPECT_TRUE(contains(write, k) && contains(write, w));
  auto read = r.fences(fence_usage::read);
  EXPECT_EQ(read.size(), 3u);
  EXPECT_FALSE(contains(read, b));
  EXPECT_EQ(r.fences(fence_usage::bookkeep).size(), 4u);
}

TEST(ReservationTest, WaitForWriteIgnoresReadFences) {
  reservation r;
  auto w = make_fence();
  auto rd = make_fence();
  add_locked(r, w, fence_usage::write);
  add_locked(r, rd, fence_usage::read);
  EXPECT_EQ(r.wait(fence_usage::write, 0s).code(), errc::timed_out);
  ASSERT_TRUE(w->signal());
  EXPECT_TRUE(r.wait(fence_usage::write, 0s)) << "a reader waits for writers only";
  EXPECT_TRUE(r.test_signaled(fence_usage::write));
  EXPECT_EQ(r.wait(fence_usage::read, 0s).code(), errc::timed_out);
  EXPECT_FALSE(r.test_signaled(fence_usage::read));
  ASSERT_TRUE(rd->signal());
  EXPECT_TRUE(r.wait(fence_usage::read, 0s));
}

TEST(ReservationTest, WaitForReadWaitsForEveryReaderNotJustOne) {
  reservation r;
  auto r1 = make_fence();
  auto r2 = make_fence();
  add_locked(r, r1, fence_usage::read);
  add_locked(r, r2, fence_usage::read);
  ASSERT_TRUE(r2->signal());
  EXPECT_EQ(r.wait(fence_usage::read, 0s).code(), errc::timed_out);
  ASSERT_TRUE(r1->signal());
  EXPECT_TRUE(r.wait(fence_usage::read, 0s));
}

TEST(ReservationTest, BookkeepFencesAreOnlySeenByWaitAll) {
  reservation r;
  auto b = make_fence();
  add_locked(r, b, fence_usage::bookkeep);
  EXPECT_TRUE(r.wait(fence_usage::read, 0s));
  EXPECT_EQ(r.wait(fence_usage::bookkeep, 0s).code(), errc::timed_out);
  ASSERT_TRUE(b->signal());
  EXPECT_TRUE(r.test_signaled(fence_usage::bookkeep));
}

TEST(ReservationTest, WaitAllWaitsForPendingMoveAfterReadFencesFailed) {
  // Device reset: the job's read fences are signaled with -EIO while the move
  // (kernel) fence they depended on is still pending. "Everything" must still
  // mean the move fence too.
  reservation r;
  auto move = make_fence();
  auto read1 = make_fence();
  auto read2 = make_fence();
  add_locked(r, move, fence_usage::kernel);
  add_locked(r, read1, fence_usage::read);
  add_locked(r, read2, fence_usage::read);
  ASSERT_TRUE(read1->signal(-EIO));
  ASSERT_TRUE(read2->signal(-EIO));

  EXPECT_FALSE(r.test_signaled(fence_usage::bookkeep));
  EXPECT_EQ(r.wait(fence_usage::bookkeep, 20ms).code(), errc::timed_out);
  // Adding another fence prunes the failed readers but must keep the move.
  add_locked(r, make_fence(), fence_usage::bookkeep);
  EXPECT_TRUE(contains(r.fences(fence_usage::kernel), move));

  std::atomic<bool> waited{false};
  auto waiter = std::async(std::launch::async, [&] {
    // Only the move and the bookkeep fence are pending; wait for the move.
    status s = r.wait(fence_usage::kernel);
    waited = true;
    return s.code();
  });
  std::this_thread::sleep_for(settle);
  EXPECT_FALSE(waited.load()) << "wait returned while the move fence was pending";
  ASSERT_TRUE(move->signal());
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::ok);
}

TEST(ReservationTest, WaitReturnsOkForFencesSignaledWithError) {
  reservation r;
  auto f = make_fence();
  add_locked(r, f, fence_usage::write);
  ASSERT_TRUE(f->signal(-EIO));
  EXPECT_TRUE(r.wait(fence_usage::bookkeep, 0s)) << "a wait reports completion, not the work's error";
}

TEST(ReservationTest, WaitCompletesWhenAnotherThreadSignals) {
  reservation r;
  auto f = make_fence();
  add_locked(r, f, fence_usage::write);
  auto signaler = std::async(std::launch::async, [&] {
    std::this_thread::sleep_for(settle);
    return f->signal().has_value();
  });
  EXPECT_TRUE(r.wait(fence_usage::write, must_happen_within));
  EXPECT_TRUE(f->is_signaled());
  EXPECT_TRUE(signaler.get());
}

TEST(ReservationTest, WaitTimesOutWhileAFenceIsPending) {
  reservation r;
  add_locked(r, make_fence(), fence_usage::kernel);
  auto s = r.wait(fence_usage::write, 10ms);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::timed_out);
  EXPECT_NE(s.err().message.find("reservation"), std::string::npos) << s.err().message;
  EXPECT_NE(s.err().message.find("write"), std::string::npos) << s.err().message;
}

TEST(ReservationTest, WaitIsCancelledByToken) {
  reservation r;
  add_locked(r, make_fence(), fence_usage::write);
  cancel_token token;
  auto waiter = std::async(std::launch::async, [&] { return r.wait(fence_usage::read, wait_forever, &token).code(); });
  std::this_thread::sleep_for(settle);
  token.cancel();
  ASSERT_EQ(waiter.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_EQ(waiter.get(), errc::cancelled);
}

TEST(ReservationTest, SignaledFencesArePruned) {
  // A long-lived buffer: 10k jobs each add a fence that signals before the
  // next job. Each job uses its own fence context so that replacement cannot
  // hide a missing prune.
  reservation r;
  std::size_t max_count = 0;
  for (int i = 0; i < 10000; ++i) {
    auto f = make_fence();
    {
      std::lock_guard guard(r.mutex());
      ASSERT_TRUE(r.reserve_fences(1));
      r.add_fence(f, i % 2 ? fence_usage::read : fence_usage::write);
    }
    max_count = std::max(max_count, r.fence_count());
    ASSERT_TRUE(f->signal());
  }
  EXPECT_LE(max_count, 2u) << "signaled fences piled up";
  EXPECT_GE(max_count, 1u);
}

TEST(ReservationTest, PendingFencesAreNotPruned) {
  reservation r;
  std::vector<fence_ptr> pending;
  for (int i = 0; i < 3; ++i) {
    pending.push_back(make_fence());
    add_locked(r, pending.back(), fence_usage::read);
  }
  auto done = make_fence();
  add_locked(r, done, fence_usage::read);
  ASSERT_TRUE(done->signal());
  add_locked(r, make_fence(), fence_usage::read);
  EXPECT_EQ(r.fence_count(), 4u) << "three pending + the newest; only the signaled one goes";
  auto all = r.fences();
  for (const auto& f : pending) EXPECT_TRUE(contains(all, f));
  EXPECT_FALSE(contains(all, done));
}

TEST(ReservationTest, PolledFenceIsPrunedOnceHardwareReportsDone) {
  reservation r;
  auto hw = polled_fence::make();
  add_locked(r, hw, fence_usage::kernel);
  add_locked(r, make_fence(), fence_usage::read);
  EXPECT_EQ(r.fence_count(), 2u);
  hw->hw_done = true;  // nobody called signal(): the prune must poll
  add_locked(r, make_fence(), fence_usage::read);
  EXPECT_EQ(r.fence_count(), 2u);
  EXPECT_FALSE(contains(r.fences(), hw));
  EXPECT_TRUE(r.test_signaled(fence_usage::kernel));
}

TEST(ReservationTest, LaterFenceFromSameContextReplacesEarlierOfSameUsage) {
  reservation r;
  auto tl = timeline::create("job");
  auto f1 = tl->next_fence();
  auto f2 = tl->next_fence();
  add_locked(r, f1, fence_usage::read);
  add_locked(r, f2, fence_usage::read);
  EXPECT_EQ(r.fence_count(), 1u);
  auto all = r.fences();
  EXPECT_TRUE(contains(all, f2));
  EXPECT_FALSE(contains(all, f1));
}

TEST(ReservationTest, EarlierFenceFromSameContextDoesNotReplaceLater) {
  reservation r;
  auto tl = timeline::create("job");
  auto f1 = tl->next_fence();
  auto f2 = tl->next_fence();
  add_locked(r, f2, fence_usage::read);
  add_locked(r, f1, fence_usage::read);
  EXPECT_EQ(r.fence_count(), 2u) << "an earlier fence cannot stand in for a later one";
  EXPECT_TRUE(contains(r.fences(), f2));
}

TEST(ReservationTest, SameContextWithStrongerUsageReplacesWeakerEntry) {
  reservation r;
  auto tl = timeline::create("job");
  auto read = tl->next_fence();
  auto write = tl->next_fence();
  add_locked(r, read, fence_usage::read);
  add_locked(r, write, fence_usage::write);
  EXPECT_EQ(r.fence_count(), 1u);
  EXPECT_TRUE(contains(r.fences(fence_usage::write), write));
}

TEST(ReservationTest, SameContextWithWeakerUsageDoesNotHideKernelFence) {
  reservation r;
  auto tl = timeline::create("engine");
  auto move = tl->next_fence();
  auto read = tl->next_fence();
  add_locked(r, move, fence_usage::kernel);
  add_locked(r, read, fence_usage::read);
  EXPECT_EQ(r.fence_count(), 2u);
  auto kernel = r.fences(fence_usage::kernel);
  ASSERT_EQ(kernel.size(), 1u) << "readers must not become visible to kernel waits";
  EXPECT_EQ(kernel[0], move);
}

TEST(ReservationTest, DifferentContextsAreNeverReplaced) {
  reservation r;
  auto a = fence::create(fence::allocate_context(), 5);
  auto b = fence::create(fence::allocate_context(), 9);
  add_locked(r, a, fence_usage::write);
  add_locked(r, b, fence_usage::write);
  EXPECT_EQ(r.fence_count(), 2u);
}

TEST(ReservationTest, SnapshotDoesNotNeedTheLockHeldByAnotherThread) {
  reservation r;
  auto f = make_fence();
  add_locked(r, f, fence_usage::write);
  r.mutex().lock();
  auto reader = std::async(std::launch::async, [&] {
    const bool seen = contains(r.fences(), f);
    const bool pending = !r.test_signaled(fence_usage::write);
    const bool timed_out = r.wait(fence_usage::write, 0s).code() == errc::timed_out;
    return seen && pending && timed_out && r.fence_count() == 1;
  });
  ASSERT_EQ(reader.wait_for(must_happen_within), std::future_status::ready)
      << "a snapshot reader blocked on the reservation lock";
  EXPECT_TRUE(reader.get());
  r.mutex().unlock();
}

TEST(ReservationTest, SnapshotWithoutLockWhileAnotherThreadAdds) {
  reservation r;
  std::atomic<bool> stop{false};
  std::atomic<bool> reader_started{false};
  std::atomic<std::size_t> nonempty_snapshots{0};
  constexpr int adds = 5000;
  constexpr std::size_t min_snapshots = 200;
  auto writer = std::async(std::launch::async, [&] {
    std::vector<fence_ptr> live;
    // Overlap with the reader for real: a fast writer could otherwise finish
    // before the reader thread even runs.
    while (!reader_started.load()) std::this_thread::yield();
    const auto give_up = std::chrono::steady_clock::now() + must_happen_within;
    for (int i = 0; i < adds || (nonempty_snapshots.load() < min_snapshots &&
                                 std::chrono::steady_clock::now() < give_up);
         ++i) {
      auto f = make_fence();
      {
        std::lock_guard guard(r.mutex());
        if (!r.reserve_fences(2)) {
          stop = true;
          return false;
        }
        r.add_fence(f, static_cast<fence_usage>(i % 4));
      }
      live.push_back(f);
      // Keep a few pending so snapshots are non-trivial; signal the oldest.
      if (live.size() > 8) {
        (void)live.front()->signal();
        live.erase(live.begin());
      }
    }
    for (auto& f : live) (void)f->signal();
    stop = true;
    return true;
  });
  std::size_t snapshots = 0;
  bool all_valid = true;
  reader_started = true;
  while (!stop.load()) {
    auto all = r.fences();
    auto write = r.fences(fence_usage::write);
    ++snapshots;
    if (!all.empty()) nonempty_snapshots.fetch_add(1);
    for (const auto& f : all) all_valid = all_valid && f != nullptr;
    for (const auto& f : write) all_valid = all_valid && f != nullptr;
    // Pending ones are at most 9 plus signaled ones not pruned yet.
    all_valid = all_valid && all.size() <= 32;
    (void)r.test_signaled(fence_usage::read);
  }
  ASSERT_EQ(writer.wait_for(must_happen_within), std::future_status::ready);
  EXPECT_TRUE(writer.get());
  EXPECT_TRUE(all_valid);
  EXPECT_GE(snapshots, min_snapshots);
  EXPECT_GE(nonempty_snapshots.load(), min_snapshots) << "the reader rarely saw a fence; the test checked little";
  EXPECT_TRUE(r.wait(fence_usage::bookkeep, 0s));
}

TEST(ReservationTest, LockSeveralReservationsThroughOneAcquireContext) {
  reservation a;
  reservation b;
  ww_acquire_ctx ctx;
  std::vector<ww_mutex*> set{&b.mutex(), &a.mutex()};
  ASSERT_TRUE(lock_all(ctx, set));
  ctx.done();
  ASSERT_TRUE(a.reserve_fences(1));
  ASSERT_TRUE(b.reserve_fences(1));
  auto job = make_fence();
  a.add_fence(job, fence_usage::write);
  b.add_fence(job, fence_usage::read);
  ctx.unlock_all();
  EXPECT_TRUE(contains(a.fences(fence_usage::write), job));
  EXPECT_TRUE(contains(b.fences(fence_usage::read), job));
  EXPECT_FALSE(a.mutex().is_locked());
  EXPECT_FALSE(b.mutex().is_locked());
}

// --- Misuse is caught by debug-build assertions (no-ops with NDEBUG). ---

class ReservationDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(ReservationDeathTest, AddFenceWithoutReserveAsserts) {
  reservation r;
  std::lock_guard guard(r.mutex());
  EXPECT_DEBUG_DEATH(r.add_fence(make_fence(), fence_usage::read), "reserve_fences");
}

TEST_F(ReservationDeathTest, AddFenceWithoutLockAsserts) {
  reservation r;
  EXPECT_DEBUG_DEATH(r.add_fence(make_fence(), fence_usage::read), "reservation lock");
}

}  // namespace
}  // namespace xbuf
