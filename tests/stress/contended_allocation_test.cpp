// SPDX-License-Identifier: MIT
//
// An allocation fails only when every placement it allows is truly out of
// room within its timeout (issue 11, "Contention").
//
// Four threads allocate {vram0, pageable} buffers over a slow copy engine:
// VRAM holds a few of them, so nearly every allocation evicts, waits for the
// moves, and races the other threads for the room the moves give back.
// Pageable memory always has room for everyone. Before the fix, a thread that
// lost that race 16 times in a row gave up with out_of_memory after ~40 ms
// although pageable had most of its 32 MiB free and the timeout was 10 s.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tests/common/sim_manager.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;
using test::KiB;
using test::MiB;

TEST(ContendedAllocationTest, NoAllocationFailsWhileALaterPlacementHasRoom) {
  test::sim_manager_options o;
  o.devices = 1;
  o.vram = 1 * MiB;
  o.pageable = 32 * MiB;
  o.copy_bytes_per_second = 200e6;  // a 256 KiB eviction takes ~1.3 ms
  test::sim_manager s(o);

  constexpr int threads = 4;
  constexpr int ops_per_thread = 600;
  std::atomic<int> failures{0};
  std::string first_failure;
  std::atomic<bool> recorded{false};
  std::vector<std::thread> pool;
  for (owner_id owner = 1; owner <= threads; ++owner) {
    pool.emplace_back([&, owner] {
      std::mt19937 rng(owner * 7919u);
      std::vector<buffer_id> live;
      for (int i = 0; i < ops_per_thread; ++i) {
        if (live.size() >= 6 || (!live.empty() && rng() % 3 == 0)) {
          const std::size_t k = rng() % live.size();
          EXPECT_TRUE(s.mm->free(owner, live[k]));
          live.erase(live.begin() + static_cast<std::ptrdiff_t>(k));
          continue;
        }
        auto r = test::request((1 + rng() % 4) * 64 * KiB, {placement::vram(0), placement::pageable()});
        r.timeout = 10s;
        auto id = s.mm->allocate(owner, r);
        if (id) {
          live.push_back(*id);
        } else if (failures.fetch_add(1) == 0) {
          first_failure = id.err().describe();
          recorded = true;
        }
      }
      for (auto b : live) EXPECT_TRUE(s.mm->free(owner, b));
    });
  }
  for (auto& t : pool) t.join();
  EXPECT_EQ(failures.load(), 0) << "first: " << (recorded ? first_failure : std::string());
  EXPECT_GT(s.mm->stats().counters.evictions, 0u) << "VRAM must overflow for the race to happen";
}

// No time to wait for evictions: a later placement with room takes the
// buffer at once; only when none has room does it fail, with timed_out.
TEST(ContendedAllocationTest, ZeroTimeoutTakesALaterPlacementOrTimesOut) {
  test::sim_manager_options o;
  o.devices = 1;
  o.vram = 1 * MiB;
  o.pageable = 2 * MiB;
  o.copy_bytes_per_second = 20e6;  // a 512 KiB eviction takes ~25 ms
  test::sim_manager s(o);
  for (int i = 0; i < 2; ++i) {
    auto id = s.mm->allocate(1, test::request(512 * KiB, {placement::vram(0)}));
    ASSERT_TRUE(id) << id.err().describe();
  }
  auto r = test::request(512 * KiB, {placement::vram(0), placement::pageable()});
  r.timeout = fence_clock::duration::zero();
  auto later = s.mm->allocate(2, r);
  ASSERT_TRUE(later) << later.err().describe();
  EXPECT_EQ(s.where(2, *later).kind, memory_kind::host_pageable);

  // VRAM only: the evictions it started cannot finish in no time.
  r.placements = {placement::vram(0)};
  auto none = s.mm->allocate(2, r);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.code(), errc::timed_out) << none.err().describe();
  EXPECT_NE(none.err().message.find("timed out waiting for evictions"), std::string::npos)
      << none.err().describe();
}

// A caller that waits for evictions and calls again (xbufd's sessions) is
// told timed_out, not given a later placement: the room its evictions make
// in VRAM is what its next call finds.
TEST(ContendedAllocationTest, ACallerThatRetriesGetsTimedOutAndItsRoomNextTime) {
  test::sim_manager_options o;
  o.devices = 1;
  o.vram = 1 * MiB;
  o.pageable = 2 * MiB;
  o.copy_bytes_per_second = 20e6;
  test::sim_manager s(o);
  for (int i = 0; i < 2; ++i) {
    auto id = s.mm->allocate(1, test::request(512 * KiB, {placement::vram(0)}));
    ASSERT_TRUE(id) << id.err().describe();
  }
  auto r = test::request(512 * KiB, {placement::vram(0), placement::pageable()});
  r.timeout = fence_clock::duration::zero();
  r.caller_retries = true;
  auto first = s.mm->allocate(2, r);
  ASSERT_FALSE(first);
  EXPECT_EQ(first.code(), errc::timed_out) << first.err().describe();
  ASSERT_TRUE(s.mm->room_fence(r.placements)->wait(10s));
  auto again = s.mm->allocate(2, r);
  ASSERT_TRUE(again) << again.err().describe();
  EXPECT_EQ(s.where(2, *again).kind, memory_kind::device);
}

}  // namespace
}  // namespace xbuf
