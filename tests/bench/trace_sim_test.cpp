// SPDX-License-Identifier: MIT
//
// The trace library of bench/trace: the MIN and LRU simulators on tiny traces
// checked by hand, the trace rules, and the generators' shapes.
#include <gtest/gtest.h>

#include <sstream>

#include "bench/trace/generate.hpp"
#include "bench/trace/simulate.hpp"
#include "bench/trace/trace.hpp"

namespace xbuf::trace {
namespace {

constexpr std::uint64_t page = 4096;

trace make(std::vector<event> ev) {
  trace t{"test", std::move(ev)};
  EXPECT_EQ(check(t), "");
  return t;
}
event a(std::uint64_t b, std::uint64_t size = page) { return {op::alloc, 1, b, size}; }
event u(std::uint64_t b) { return {op::use, 1, b, 0}; }
event f(std::uint64_t b) { return {op::free, 1, b, 0}; }

// Three pages of VRAM, four one-page buffers: A B C D, then A B D C.
//   MIN: D's alloc evicts C (next use farthest, event 7); A B D hit; C's
//        promotion evicts one of the three never used again. 2 evictions +
//        1 promotion = 3 pages.
//   LRU: D evicts A; A evicts B; B evicts C; D hits; C evicts A.
//        4 evictions + 3 promotions = 7 pages.
TEST(TraceSimTest, MinAndLruOnAHandCheckedTrace) {
  auto t = make({a(1), a(2), a(3), a(4), u(1), u(2), u(4), u(3)});
  auto min = simulate(t, 3 * page, sim_policy::min);
  EXPECT_EQ(min.evictions, 2u);
  EXPECT_EQ(min.promotions, 1u);
  EXPECT_EQ(min.moved(), 3 * page);
  auto lru = simulate(t, 3 * page, sim_policy::lru);
  EXPECT_EQ(lru.evictions, 4u);
  EXPECT_EQ(lru.promotions, 3u);
  EXPECT_EQ(lru.moved(), 7 * page);
}

// A buffer never used again goes first, and its eviction still costs its size
// (the manager moves contents it cannot drop); a freed one costs nothing.
TEST(TraceSimTest, MinEvictsTheDeadFirstAndFreesCostNothing) {
  auto t = make({a(1), a(2), u(2), a(3), u(2), f(1), f(2), a(4), a(5)});
  auto min = simulate(t, 2 * page, sim_policy::min);
  // a(3) needs a page: 1 is dead (never used again), 2 is used next: evict 1,
  // so the second u(2) hits (no promotion). After the frees a(4) fits, and
  // a(5) evicts 3 or 4 (both dead).
  EXPECT_EQ(min.promotions, 0u);
  EXPECT_EQ(min.evictions, 2u);
  EXPECT_EQ(min.moved(), 2 * page);
}

// Sizes count at the buddy block: 5000 bytes take 8 KiB. The bytes moved are
// the buffer's size, as the manager counts them.
TEST(TraceSimTest, CapacityCountsBlocksAndMovesCountSizes) {
  EXPECT_EQ(block_bytes(5000), 8192u);
  EXPECT_EQ(block_bytes(1), 4096u);
  auto t = make({a(1, 5000), a(2), a(3), u(1)});
  EXPECT_EQ(peak_bytes(t), 8192u + 2 * page);
  auto min = simulate(t, 3 * page, sim_policy::min);
  // a(3): 1 used next, 2 never: evict 2 (4 KiB frees one page, enough).
  EXPECT_EQ(min.evictions, 1u);
  EXPECT_EQ(min.moved(), page);
  // Two pages: 1 fills them; 2 evicts 1 (5000 bytes moved), 3 fits beside
  // 2, u(1) evicts both and promotes 1 (5000 more).
  auto tight = simulate(t, 2 * page, sim_policy::min);
  EXPECT_EQ(tight.error, "");
  EXPECT_EQ(tight.evictions, 3u);
  EXPECT_EQ(tight.moved(), 5000 + page + page + 5000);
  auto none = simulate(t, page, sim_policy::min);
  EXPECT_NE(none.error.find("larger than the capacity"), std::string::npos) << none.error;
}

TEST(TraceSimTest, CheckNamesWhatIsWrong) {
  trace twice{"t", {a(1), a(1)}};
  EXPECT_NE(check(twice).find("allocated twice"), std::string::npos);
  trace after{"t", {a(1), f(1), u(1)}};
  EXPECT_NE(check(after).find("used after its free"), std::string::npos);
  trace unknown{"t", {u(9)}};
  EXPECT_NE(check(unknown).find("never allocated"), std::string::npos);
}

TEST(TraceSimTest, TextFormatRoundTrips) {
  auto t = make({a(1, 12345), u(1), f(1)});
  std::stringstream s;
  write_text(s, t);
  std::string error;
  auto back = read_text(s, &error);
  EXPECT_EQ(error, "");
  ASSERT_EQ(back.events.size(), 3u);
  EXPECT_EQ(back.events[0].size, 12345u);
  EXPECT_EQ(back.events[2].kind, op::free);
  EXPECT_EQ(back.name, "test");
}

// The generators' traces obey the rules; MIN never moves more than LRU on
// them, and LRU pays for the cycling job (the gap the policy must close).
TEST(TraceSimTest, GeneratedTracesAreWellFormedAndLruLosesOnThem) {
  training_shape ts;
  ts.steps = 3;
  auto train = training(ts);
  ASSERT_EQ(check(train), "");
  inference_shape is;
  is.decode_steps = 40;
  auto infer = inference(is);
  ASSERT_EQ(check(infer), "");
  tenants_shape ns;
  ns.kernels = 2000;
  auto ten = tenants(ns);
  ASSERT_EQ(check(ten), "");
  EXPECT_EQ(summarize(ten).owners, 3u);
  for (auto* t : {&train, &infer}) {
    const auto cap = peak_bytes(*t) / 3;
    const auto min = simulate(*t, cap, sim_policy::min);
    const auto lru = simulate(*t, cap, sim_policy::lru);
    ASSERT_EQ(min.error, "");
    EXPECT_GT(min.moved(), 0u) << t->name;
    EXPECT_LE(min.moved(), lru.moved()) << t->name;
  }
  const auto min = simulate(ten, ns.vram_bytes, sim_policy::min);
  const auto lru = simulate(ten, ns.vram_bytes, sim_policy::lru);
  EXPECT_GT(static_cast<double>(lru.moved()), 1.25 * static_cast<double>(min.moved()));
}

}  // namespace
}  // namespace xbuf::trace
