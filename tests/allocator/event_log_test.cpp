// SPDX-License-Identifier: MIT
// allocator/event_log: sequence numbers, the bounded ring (what wraps is
// counted as dropped), paging with `next`, the visibility filter, and
// writers racing a reader.
#include "allocator/event_log.hpp"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace xbuf {
namespace {

memory_event alloc_of(owner_id owner, buffer_id id) {
  return {.kind = memory_event_kind::alloc, .owner = owner, .buffer = id, .bytes = 4096, .to = 0};
}

TEST(EventLogTest, EventsComeBackInOrderPageByPage) {
  event_log log(100);
  for (buffer_id i = 1; i <= 10; ++i) log.record(alloc_of(1, i));
  auto first = log.since(0, 4, nullptr);
  ASSERT_EQ(first.events.size(), 4u);
  EXPECT_EQ(first.events[0].seq, 1u);
  EXPECT_EQ(first.events[3].buffer, 4u);
  EXPECT_EQ(first.next, 4u);
  EXPECT_EQ(first.dropped, 0u);
  EXPECT_LE(first.events[0].time_ns, first.events[3].time_ns);
  auto rest = log.since(first.next, 100, nullptr);
  ASSERT_EQ(rest.events.size(), 6u);
  EXPECT_EQ(rest.next, 10u);
  EXPECT_TRUE(log.since(rest.next, 100, nullptr).events.empty());
  EXPECT_EQ(log.since(rest.next, 100, nullptr).next, 10u) << "nothing newer: next stays";
}

TEST(EventLogTest, TheRingKeepsTheNewestAndCountsWhatItDropped) {
  event_log log(8);
  for (buffer_id i = 1; i <= 20; ++i) log.record(alloc_of(1, i));
  auto page = log.since(0, 100, nullptr);
  ASSERT_EQ(page.events.size(), 8u);
  EXPECT_EQ(page.events.front().seq, 13u);
  EXPECT_EQ(page.events.back().buffer, 20u);
  EXPECT_EQ(page.dropped, 12u);
  EXPECT_EQ(log.since(15, 100, nullptr).dropped, 0u);
}

TEST(EventLogTest, AFilterHidesOtherOwnersButStillAdvances) {
  event_log log(100);
  for (buffer_id i = 1; i <= 6; ++i) log.record(alloc_of(i % 2 == 0 ? 2 : 3, i));
  auto mine = log.since(0, 100, [](owner_id o) { return o == 2; });
  ASSERT_EQ(mine.events.size(), 3u);
  for (const auto& e : mine.events) EXPECT_EQ(e.owner, 2u);
  EXPECT_EQ(mine.next, 6u);
}

TEST(EventLogTest, WritersRacingAReaderLoseNothingAndKeepSequenceOrder) {
  event_log log(1u << 16);
  std::vector<std::thread> writers;
  for (int w = 0; w < 4; ++w) {
    writers.emplace_back([&log, w] {
      for (buffer_id i = 0; i < 5000; ++i) log.record(alloc_of(static_cast<owner_id>(w + 1), i));
    });
  }
  std::uint64_t seen = 0, since = 0, last = 0;
  while (seen < 20000) {
    auto page = log.since(since, 1024, nullptr);
    for (const auto& e : page.events) {
      ASSERT_EQ(e.seq, last + 1) << "a gap or a reorder";
      last = e.seq;
    }
    seen += page.events.size();
    since = page.next;
  }
  for (auto& t : writers) t.join();
  EXPECT_EQ(seen, 20000u);
}

}  // namespace
}  // namespace xbuf
