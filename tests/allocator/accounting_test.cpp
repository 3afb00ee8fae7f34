// SPDX-License-Identifier: MIT
// Budgets (allocator/accounting.hpp): the class on its own, and through the
// memory manager with two requests racing for a budget only one fits.
#include "allocator/accounting.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

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

TEST(AccountingTest, DomainQuotaFollowsTheBytesWherePlacedAndMoved) {
  accounting acc(owner_limits{.pinned_limit = 1 * MiB, .domain_quota = 1 * MiB, .max_buffers = 0});
  auto b = make_buffer(1, 7, 768 * KiB);
  EXPECT_TRUE(acc.domain_allows(7, 0, 1 * MiB));
  acc.placed(b, 0);
  EXPECT_FALSE(acc.domain_allows(7, 0, 512 * KiB));
  EXPECT_TRUE(acc.domain_allows(8, 0, 1 * MiB)) << "a quota per owner";
  acc.moved(b, 0, 2);
  EXPECT_TRUE(acc.domain_allows(7, 0, 1 * MiB)) << "evicted bytes left domain 0";
  EXPECT_EQ(acc.domain_bytes(7, 2), 768 * KiB);
  EXPECT_NE(acc.domain_quota_text(7, 2, "pageable").find("768 KiB of 1 MiB allowed in pageable"), std::string::npos);
  acc.removed(b, 2);
  EXPECT_EQ(acc.domain_bytes(7, 2), 0u);
}

TEST(AccountingTest, BufferLimitCountsBuffersNotYetFreed) {
  accounting acc(owner_limits{.pinned_limit = 1 * MiB, .domain_quota = 0, .max_buffers = 2});
  ASSERT_TRUE(acc.charge_new(7, 4 * KiB, false, "a"));
  ASSERT_TRUE(acc.charge_new(7, 4 * KiB, false, "b"));
  auto third = acc.charge_new(7, 4 * KiB, false, "c");
  ASSERT_FALSE(third);
  EXPECT_EQ(third.code(), errc::quota_exceeded);
  EXPECT_NE(third.err().message.find("holds 2 buffers"), std::string::npos) << third.err().message;
  EXPECT_EQ(acc.owner_buffers(7), 2u);
  acc.owner_freed(make_buffer(1, 7, 4 * KiB));
  EXPECT_TRUE(acc.charge_new(7, 4 * KiB, false, "d"));
}

TEST_F(RacingBudgetTest, DomainQuotaHoldsWhenTwoWaitingRequestsGetRoomAtOnce) {
  test::sim_manager_options o;
  o.vram = 2 * MiB;
  o.domain_quota = 1 * MiB;
  test::sim_manager s(o);
  // Bob (1 MiB) and Carol (1 MiB: each within the quota) fill vram0 and
  // keep it busy; both of Alice's requests wait for it.
  auto busy = fence::create(fence::allocate_context(), 1);
  for (owner_id hog_owner : {bob, owner_id{3}}) {
    auto hog = s.mm->allocate(hog_owner, test::request(1 * MiB, {placement::vram(0)}));
    ASSERT_TRUE(hog) << hog.err().describe();
    ASSERT_TRUE(s.mm->add_fence(hog_owner, *hog, busy, fence_usage::read));
  }
  std::vector<result<buffer_id>> got(2, result<buffer_id>(fail(errc::bad_state, "not run")));
  std::vector<std::thread> ts;
  for (int i = 0; i < 2; ++i) {
    ts.emplace_back([&, i] { got[static_cast<std::size_t>(i)] = s.mm->allocate(alice, test::request(768 * KiB, {placement::vram(0)})); });
  }
  for (int i = 0; i < 10000 && s.domain("vram0").delayed_free_bytes == 0; ++i) std::this_thread::sleep_for(1ms);
  std::this_thread::sleep_for(20ms);  // both are waiting now (they only wait once eviction started)
  ASSERT_TRUE(busy->signal());
  for (auto& t : ts) t.join();
  const int won = (got[0] ? 1 : 0) + (got[1] ? 1 : 0);
  EXPECT_EQ(won, 1) << "two placements of 768 KiB passed a 1 MiB domain quota";
  for (auto& g : got) {
    if (!g) {
      EXPECT_EQ(g.code(), errc::quota_exceeded) << g.err().describe();
      EXPECT_NE(g.err().message.find("in vram0"), std::string::npos) << g.err().message;
    }
  }
}

TEST(AccountingRaceTest, BufferLimitHoldsUnderConcurrentAllocations) {
  test::sim_manager_options o;
  o.max_buffers_per_owner = 3;
  test::sim_manager s(o);
  std::atomic<int> won{0}, refused{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < 8; ++i) {
    ts.emplace_back([&] {
      auto r = s.mm->allocate(7, test::request(4 * KiB, {placement::pageable()}));
      (r ? won : refused)++;
      if (!r) {
        EXPECT_EQ(r.code(), errc::quota_exceeded);
      }
    });
  }
  for (auto& t : ts) t.join();
  EXPECT_EQ(won.load(), 3);
  EXPECT_EQ(refused.load(), 5);
}

}  // namespace
}  // namespace xbuf
