// SPDX-License-Identifier: MIT
// Budgets (allocator/accounting.hpp): the class on its own, and through the
// memory manager with two requests racing for a budget only one fits.
#include "allocator/accounting.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/common/sim_manager.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;
using test::KiB;
using test::MiB;

buffer make_buffer(buffer_id id, owner_id owner, std::uint64_t size, bool no_evict = false) {
  return buffer(id, owner, size, 0, {placement::pageable()}, false, no_evict, "");
}

TEST(AccountingTest, ChargeChecksTheQuotaAndChargesInOneStep) {
  accounting acc(1 * MiB);
  acc.set_quota(7, 1 * MiB);
  ASSERT_TRUE(acc.charge_new(7, 768 * KiB, false, "first"));
  auto second = acc.charge_new(7, 768 * KiB, false, "second");
  ASSERT_FALSE(second);
  EXPECT_EQ(second.code(), errc::quota_exceeded);
  EXPECT_NE(second.err().message.find("second: owner quota 1 MiB"), std::string::npos)
      << second.err().message;
  EXPECT_EQ(acc.owner_bytes(7), 768 * KiB) << "a refused charge charges nothing";
  acc.refund_new(7, 768 * KiB, false);
  EXPECT_EQ(acc.owner_bytes(7), 0u);
  EXPECT_TRUE(acc.charge_new(8, 4 * MiB, false, "no quota")) << "owners without a quota";
}

TEST(AccountingTest, PinnedBytesCountOncePerBufferAndKeepTheInvariant) {
  accounting acc(1 * MiB);
  auto b = make_buffer(1, 7, 512 * KiB);
  std::unique_lock lock(b.resv.mutex());
  ASSERT_TRUE(acc.pin_attachment(b, "attach"));
  ASSERT_TRUE(acc.pin_attachment(b, "attach"));
  acc.begin_cpu_access(7, b);
  EXPECT_EQ(acc.pinned_bytes(), 512 * KiB) << "two pinned importers, one buffer";
  EXPECT_EQ(b.pins, b.pinned_attachments + 1) << "pins == pinned attachments + CPU accesses";
  acc.unpin_attachment(b);
  EXPECT_EQ(acc.pinned_bytes(), 512 * KiB);
  acc.unpin_attachment(b);
  EXPECT_EQ(acc.pinned_bytes(), 0u);
  EXPECT_EQ(b.pins, 1);
  ASSERT_TRUE(acc.end_cpu_access(7, b, "end"));
  EXPECT_EQ(b.pins, 0);
  auto again = acc.end_cpu_access(7, b, "end");
  EXPECT_EQ(again.code(), errc::bad_state);
}

TEST(AccountingTest, PinnedLimitRefusesWithoutCharging) {
  accounting acc(1 * MiB);
  auto a = make_buffer(1, 7, 768 * KiB);
  auto b = make_buffer(2, 7, 768 * KiB);
  std::unique_lock la(a.resv.mutex());
  std::unique_lock lb(b.resv.mutex());
  ASSERT_TRUE(acc.pin_attachment(a, "attach a"));
  auto r = acc.pin_attachment(b, "attach b");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::quota_exceeded);
  EXPECT_NE(r.err().message.find("pinned limit 1 MiB"), std::string::npos) << r.err().message;
  EXPECT_EQ(b.pins, 0);
  EXPECT_EQ(acc.pinned_bytes(), 768 * KiB);
}

TEST(AccountingTest, NoEvictBuffersChargeThePinnedLimitAtAllocation) {
  accounting acc(1 * MiB);
  ASSERT_TRUE(acc.charge_new(7, 768 * KiB, true, "a"));
  EXPECT_EQ(acc.pinned_bytes(), 768 * KiB);
  EXPECT_EQ(acc.charge_new(7, 768 * KiB, true, "b").code(), errc::quota_exceeded);
  EXPECT_EQ(acc.owner_bytes(7), 768 * KiB);
}

// The scenario the attack run found: the first request must wait for a busy
// buffer to be evicted; a second one arrives meanwhile. Before the charge
// moved in front of the wait, both passed a budget only one fits.
struct RacingBudgetTest : ::testing::Test {
  static constexpr owner_id alice = 1;
  static constexpr owner_id bob = 2;

  void race(test::sim_manager& s, alloc_request first, alloc_request second) {
    // Bob fills vram0 and keeps it busy: evicting it waits for his fence.
    auto hog = s.mm->allocate(bob, test::request(1 * MiB, {placement::vram(0)}));
    ASSERT_TRUE(hog) << hog.err().describe();
    auto busy = fence::create(fence::allocate_context(), 1);
    ASSERT_TRUE(s.mm->add_fence(bob, *hog, busy, fence_usage::read));

    result<buffer_id> waited = fail(errc::bad_state, "not run");
    std::thread t([&] { waited = s.mm->allocate(alice, first); });
    // Until the first request is waiting for the eviction it started.
    for (int i = 0; i < 10000 && s.domain("vram0").delayed_free_bytes == 0; ++i) {
      std::this_thread::sleep_for(1ms);
    }
    ASSERT_GT(s.domain("vram0").delayed_free_bytes, 0u) << "the first request never waited";
    auto raced = s.mm->allocate(alice, second);
    ASSERT_TRUE(busy->signal());
    t.join();
    ASSERT_TRUE(waited) << waited.err().describe();
    ASSERT_FALSE(raced) << "both requests passed a budget only one fits";
    EXPECT_EQ(raced.code(), errc::quota_exceeded) << raced.err().describe();
  }
};

TEST_F(RacingBudgetTest, OwnerQuotaHoldsWhileTheFirstRequestWaitsForEviction) {
  test::sim_manager s;
  s.mm->set_quota(alice, 1 * MiB);
  race(s, test::request(768 * KiB, {placement::vram(0)}),
       test::request(768 * KiB, {placement::pageable()}));
  EXPECT_EQ(s.mm->stats().owners.size(), 2u);
}

TEST_F(RacingBudgetTest, PinnedLimitHoldsWhileTheFirstRequestWaitsForEviction) {
  test::sim_manager_options o;
  o.pinned_limit = 1 * MiB;
  test::sim_manager s(o);
  auto first = test::request(768 * KiB, {placement::vram(0)});
  first.no_evict = true;
  auto second = test::request(768 * KiB, {placement::pageable()});
  second.no_evict = true;
  race(s, first, second);
  EXPECT_EQ(s.mm->stats().pinned_bytes, 768 * KiB);
}

}  // namespace
}  // namespace xbuf
