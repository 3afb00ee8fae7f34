// SPDX-License-Identifier: MIT
//
// The eviction policy (allocator/eviction_policy.hpp): its predictor on
// hand-made histories, and the manager with it on a real sim backend - a job
// cycling through more than VRAM must not flush another job's hot buffers,
// and hints move a buffer in the order.
#include "allocator/eviction_policy.hpp"

#include <gtest/gtest.h>

#include <limits>
#include <list>

#include "allocator/buffer.hpp"
#include "tests/common/sim_manager.hpp"

namespace xbuf {
namespace {

using test::KiB;
using test::request;
using test::sim_manager;

constexpr owner_id alice = 1;
constexpr owner_id bob = 2;
const std::vector<placement> vram0_then_host{placement::vram(0), placement::pageable()};

reuse_history uses(std::initializer_list<std::uint64_t> ticks) {
  reuse_history h;
  for (auto t : ticks) record_use(h, t);
  return h;
}

TEST(EvictionPolicyTest, APeriodicBufferIsPredictedOnePeriodAhead) {
  EXPECT_EQ(predicted_interval(uses({10, 20, 30})), 10u);
  // A weight used in forward, backward and by the optimizer: uses at 0, 2, 7
  // in each step of 10 ticks. After 22 comes 27 (interval 5), not 25.
  EXPECT_EQ(predicted_interval(uses({0, 2, 7, 10, 12, 17, 20, 22})), 5u);
  // Two uses, or no rhythm: no prediction.
  EXPECT_FALSE(predicted_interval(uses({10, 20})));
  EXPECT_FALSE(predicted_interval(uses({1, 2, 40, 41, 300})));
}

TEST(EvictionPolicyTest, ScoresAreThePredictedUseOrLrusEstimate) {
  const auto periodic = uses({10, 20, 30});
  EXPECT_EQ(eviction_score(periodic, 32), 40u) << "next use predicted at 40";
  EXPECT_EQ(eviction_score(periodic, 60), 90u) << "late by more than half a period: LRU's now + (now - last)";
  EXPECT_EQ(eviction_score(uses({5}), 32), 59u);
}

TEST(EvictionPolicyTest, HintsGoFirstOrLastAndAUseClearsDone) {
  auto h = uses({10, 20, 30});
  h.hint = eviction_hint::done;
  EXPECT_EQ(eviction_score(h, 32), std::numeric_limits<std::uint64_t>::max());
  record_use(h, 40);
  EXPECT_EQ(h.hint, eviction_hint::none) << "the next use ends 'done'";
  h.hint = eviction_hint::keep;
  EXPECT_EQ(eviction_score(h, 1000), 0u);
  record_use(h, 1001);
  EXPECT_EQ(h.hint, eviction_hint::keep) << "keep stays until the framework says otherwise";
}

// Buffers with too few uses for a rhythm go in plain LRU order, so the
// simple cases keep LRU's behaviour.
TEST(EvictionPolicyTest, WithoutAHistoryTheOrderIsLru) {
  std::vector<std::unique_ptr<buffer>> bufs;
  std::list<buffer*> lru;
  for (std::uint64_t i = 0; i < 4; ++i) {
    bufs.push_back(std::make_unique<buffer>(i + 1, alice, 4096, 0, vram0_then_host, false, false, ""));
    bufs.back()->reuse = i % 2 ? uses({i + 1, i + 11}) : uses({i + 1});
    lru.push_back(bufs.back().get());
  }
  // LRU list order by last use: 1 (1), 3 (3), 2 (12), 4 (14).
  lru = {bufs[0].get(), bufs[2].get(), bufs[1].get(), bufs[3].get()};
  const auto order = victim_order(lru, 20);
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(order[0]->id, 1u);
  EXPECT_EQ(order[1]->id, 3u);
  EXPECT_EQ(order[2]->id, 2u);
  EXPECT_EQ(order[3]->id, 4u);
}

// Bob cycles 24 buffers of 64 KiB through a 1 MiB VRAM (16 fit); alice uses
// her 4 hot buffers once every 16 of bob's uses. Between two of her uses 19
// other buffers are touched, so LRU evicts every one of them each time (and
// bob never hits: in a loop the LRU victim is the next buffer needed). The
// policy sees her buffers due in 20 ticks and bob's in 28, evicts bob's
// just-used ones, and so keeps her set and a part of bob's loop.
TEST(EvictionPolicyTest, AScanLargerThanVramDoesNotFlushAHotWorkingSet) {
  sim_manager s;
  std::vector<buffer_id> hot, loop;
  for (int i = 0; i < 4; ++i) {
    auto id = s.mm->allocate(alice, request(64 * KiB, vram0_then_host));
    ASSERT_TRUE(id) << id.err().describe();
    hot.push_back(*id);
  }
  for (int i = 0; i < 24; ++i) {
    auto id = s.mm->allocate(bob, request(64 * KiB, vram0_then_host));
    ASSERT_TRUE(id) << id.err().describe();
    loop.push_back(*id);
  }
  std::size_t hot_uses = 0, hot_hits = 0, loop_uses = 0, loop_hits = 0;
  int bob_uses = 0;
  for (int pass = 0; pass < 10; ++pass) {
    const bool measured = pass >= 4;  // after a few periods of history
    for (auto id : loop) {
      const buffer_id one[] = {id};
      auto v = s.mm->validate(bob, one);
      ASSERT_TRUE(v) << v.err().describe();
      if (measured) {
        ++loop_uses;
        loop_hits += v->in_place;
      }
      if (++bob_uses % 16 != 0) continue;
      for (auto h : hot) {
        const buffer_id mine[] = {h};
        auto w = s.mm->validate(alice, mine);
        ASSERT_TRUE(w) << w.err().describe();
        EXPECT_EQ(w->no_room, 0u);
        if (measured) {
          ++hot_uses;
          hot_hits += w->in_place;
        }
      }
    }
  }
  ASSERT_GT(hot_uses, 0u);
  EXPECT_EQ(hot_hits, hot_uses) << "alice's hot buffers stay in VRAM while bob cycles";
  EXPECT_GT(loop_hits, loop_uses / 4) << "bob keeps part of his loop in VRAM (LRU: none)";
  for (auto h : hot) EXPECT_EQ(s.where(alice, h), placement::vram(0));
}

TEST(EvictionPolicyTest, AdviceMovesABufferInTheOrder) {
  sim_manager s;
  std::vector<buffer_id> ids;
  for (int i = 0; i < 4; ++i) {  // 4 x 256 KiB fill vram0
    auto id = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
    ASSERT_TRUE(id);
    ids.push_back(*id);
  }
  // ids[0] is the LRU victim; keep protects it, done on the newest sends
  // that one out first.
  ASSERT_TRUE(s.mm->advise(alice, ids[0], eviction_hint::keep));
  ASSERT_TRUE(s.mm->advise(alice, ids[3], eviction_hint::done));
  auto e = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_EQ(s.where(alice, ids[3]), placement::pageable());
  auto f = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
  ASSERT_TRUE(f) << f.err().describe();
  EXPECT_EQ(s.where(alice, ids[1]), placement::pageable()) << "then LRU order, passing over 'keep'";
  EXPECT_EQ(s.where(alice, ids[0]), placement::vram(0));
  auto bad = s.mm->advise(bob, ids[0], eviction_hint::done);
  EXPECT_EQ(bad.code(), errc::not_found) << "another owner's buffer reads as unknown";
}

// Tenants do not trust each other: alice's keep orders alice's buffers, it
// does not make bob's allocation evict bob's own buffers (or anyone's)
// before alice's. And bob, shown alice's buffer, cannot advise it.
TEST(EvictionPolicyTest, KeepOrdersOnlyItsOwnersBuffers) {
  sim_manager s;
  std::vector<buffer_id> mine;
  for (int i = 0; i < 2; ++i) {
    auto id = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
    ASSERT_TRUE(id);
    mine.push_back(*id);
  }
  std::vector<buffer_id> his;
  for (int i = 0; i < 2; ++i) {
    auto id = s.mm->allocate(bob, request(256 * KiB, vram0_then_host));
    ASSERT_TRUE(id);
    his.push_back(*id);
  }
  for (auto id : mine) ASSERT_TRUE(s.mm->advise(alice, id, eviction_hint::keep));
  // Bob needs room: plain LRU order among everyone, alice's oldest first.
  auto room = s.mm->allocate(bob, request(256 * KiB, vram0_then_host));
  ASSERT_TRUE(room) << room.err().describe();
  EXPECT_EQ(s.where(alice, mine[0]), placement::pageable()) << "keep counts nothing against bob";
  EXPECT_EQ(s.where(bob, his[0]), placement::vram(0));
  // Alice needs room: her keeps hold, bob's LRU buffer goes.
  auto hers = s.mm->allocate(alice, request(256 * KiB, vram0_then_host));
  ASSERT_TRUE(hers) << hers.err().describe();
  EXPECT_EQ(s.where(alice, mine[1]), placement::vram(0));
  EXPECT_EQ(s.where(bob, his[0]), placement::pageable());

  ASSERT_TRUE(s.mm->share(alice, mine[1], bob));
  auto foreign = s.mm->advise(bob, mine[1], eviction_hint::done);
  EXPECT_EQ(foreign.code(), errc::permission_denied);
  EXPECT_NE(foreign.err().message.find("only its owner"), std::string::npos) << foreign.err().message;
}

}  // namespace
}  // namespace xbuf
