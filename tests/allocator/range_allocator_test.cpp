// SPDX-License-Identifier: MIT
#include "allocator/range_allocator.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <iterator>
#include <map>
#include <random>
#include <string>
#include <vector>

namespace xbuf {
namespace {

constexpr std::uint64_t kib = 1024;
constexpr std::uint64_t mib = 1024 * kib;
constexpr std::uint64_t chunk = 4 * kib;

range_allocator make(std::uint64_t size, std::uint64_t min_block = chunk) {
  auto a = range_allocator::create(size, min_block);
  EXPECT_TRUE(a.has_value()) << (a ? "" : a.err().message);
  return std::move(a).value();
}

range must_allocate(range_allocator& a, std::uint64_t size, std::uint64_t alignment = 0) {
  auto r = a.allocate(size, alignment);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.err().message);
  return r ? *r : range{};
}

void expect_valid(const range_allocator& a) {
  const status s = a.validate();
  EXPECT_TRUE(s.has_value()) << (s ? "" : s.err().message);
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// --------------------------------------------------------------- construction

TEST(RangeAllocatorTest, CreateRejectsBadMinBlockNamingIt) {
  for (std::uint64_t bad : {std::uint64_t{0}, std::uint64_t{2048}, std::uint64_t{12288}}) {
    auto a = range_allocator::create(mib, bad);
    ASSERT_FALSE(a.has_value());
    EXPECT_EQ(a.code(), errc::invalid_argument);
    EXPECT_TRUE(contains(a.err().message, "min_block " + std::to_string(bad))) << a.err().message;
  }
}

TEST(RangeAllocatorTest, CreateRejectsSizeBelowOrNotMultipleOfMinBlock) {
  auto zero = range_allocator::create(0, chunk);
  ASSERT_FALSE(zero.has_value());
  EXPECT_EQ(zero.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(zero.err().message, "size 0")) << zero.err().message;

  auto ragged = range_allocator::create(mib + 100, chunk);
  ASSERT_FALSE(ragged.has_value());
  EXPECT_EQ(ragged.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(ragged.err().message, std::to_string(mib + 100))) << ragged.err().message;
}

TEST(RangeAllocatorTest, FreshAllocatorIsOneFreeBlock) {
  range_allocator a = make(mib);
  const auto s = a.stats();
  EXPECT_EQ(s.size, mib);
  EXPECT_EQ(s.min_block, chunk);
  EXPECT_EQ(s.free_bytes, mib);
  EXPECT_EQ(s.used_block_bytes, 0U);
  EXPECT_EQ(s.largest_free_block, mib);
  EXPECT_EQ(s.max_order, 8U);  // 1 MiB / 4 KiB = 2^8
  EXPECT_EQ(s.free_blocks[8], 1U);
  EXPECT_EQ(s.external_fragmentation, 0.0);
  expect_valid(a);
}

TEST(RangeAllocatorTest, NonPowerOfTwoSizeIsCoveredByAlignedRoots) {
  // 13 chunks = 8 + 4 + 1: roots at 0 (8 chunks), 32 KiB (4 chunks), 48 KiB (1).
  range_allocator a = make(13 * chunk);
  auto s = a.stats();
  EXPECT_EQ(s.free_bytes, 13 * chunk);
  EXPECT_EQ(s.free_blocks[3], 1U);
  EXPECT_EQ(s.free_blocks[2], 1U);
  EXPECT_EQ(s.free_blocks[1], 0U);
  EXPECT_EQ(s.free_blocks[0], 1U);
  EXPECT_EQ(s.largest_free_block, 8 * chunk);

  // Every byte is usable: 13 single chunks fit, each aligned, none overlapping.
  std::vector<range> all;
  for (int i = 0; i < 13; ++i) all.push_back(must_allocate(a, chunk));
  EXPECT_EQ(a.free_bytes(), 0U);
  std::sort(all.begin(), all.end(), [](const range& x, const range& y) { return x.offset < y.offset; });
  for (std::size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].offset, i * chunk);
  EXPECT_EQ(a.allocate(chunk).code(), errc::out_of_memory);
  for (const range& r : all) ASSERT_TRUE(a.free(r).has_value());
  EXPECT_EQ(a.stats().free_blocks, s.free_blocks);
  expect_valid(a);
}

TEST(RangeAllocatorTest, RequestLargerThanEveryRootIsInvalidNotOutOfMemory) {
  // 12 chunks = roots of 8 and 4: 9 chunks fit in size but need a 16-chunk block.
  range_allocator a = make(12 * chunk);
  auto r = a.allocate(9 * chunk);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(r.err().message, "never be satisfied")) << r.err().message;
}

// ------------------------------------------------------------ allocate / free

TEST(RangeAllocatorTest, AllocateRoundsUpToPowerOfTwoBlockAndFreeRestores) {
  range_allocator a = make(mib);
  const range r = must_allocate(a, 5000);
  EXPECT_EQ(r.size, 5000U);
  EXPECT_EQ(r.block_size, 8 * kib);
  EXPECT_EQ(r.offset % r.block_size, 0U);
  EXPECT_EQ(a.free_bytes(), mib - 8 * kib);
  expect_valid(a);

  ASSERT_TRUE(a.free(r).has_value());
  EXPECT_EQ(a.free_bytes(), mib);
  expect_valid(a);
}

TEST(RangeAllocatorTest, SmallRequestTakesOneChunk) {
  range_allocator a = make(mib);
  const range r = must_allocate(a, 1);
  EXPECT_EQ(r.block_size, chunk);
  EXPECT_EQ(a.stats().internal_fragmentation_bytes, chunk - 1);
}

TEST(RangeAllocatorTest, AllocateRejectsInvalidArguments) {
  range_allocator a = make(mib);
  EXPECT_EQ(a.allocate(0).code(), errc::invalid_argument);
  auto too_big = a.allocate(mib + 1);
  ASSERT_FALSE(too_big.has_value());
  EXPECT_EQ(too_big.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(too_big.err().message, "larger than the whole range")) << too_big.err().message;
  auto bad_align = a.allocate(chunk, 3 * chunk);
  ASSERT_FALSE(bad_align.has_value());
  EXPECT_EQ(bad_align.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(bad_align.err().message, "alignment 12288")) << bad_align.err().message;
  EXPECT_EQ(a.free_bytes(), mib);
}

TEST(RangeAllocatorTest, SplitBuddiesMergeBackToOneBlock) {
  range_allocator a = make(mib);
  std::vector<range> chunks;
  for (int i = 0; i < 256; ++i) chunks.push_back(must_allocate(a, chunk));
  EXPECT_EQ(a.free_bytes(), 0U);
  EXPECT_EQ(a.largest_free_block(), 0U);
  // Free in an order that makes merges happen at every level, not just in
  // address order: evens first, then odds.
  for (std::size_t i = 0; i < chunks.size(); i += 2) ASSERT_TRUE(a.free(chunks[i]).has_value());
  EXPECT_EQ(a.largest_free_block(), chunk);  // no two free chunks are buddies
  for (std::size_t i = 1; i < chunks.size(); i += 2) ASSERT_TRUE(a.free(chunks[i]).has_value());
  const auto s = a.stats();
  EXPECT_EQ(s.largest_free_block, mib);
  EXPECT_EQ(s.free_blocks[8], 1U);
  for (unsigned k = 0; k < 8; ++k) EXPECT_EQ(s.free_blocks[k], 0U) << "order " << k;
  expect_valid(a);
}

TEST(RangeAllocatorTest, ExhaustionErrorNamesRequestFreeBytesAndLargestBlock) {
  range_allocator a = make(64 * kib);
  // Leave 3 free chunks, no two of them buddies: 12 KiB free, largest 4 KiB.
  std::vector<range> rs;
  for (int i = 0; i < 16; ++i) rs.push_back(must_allocate(a, chunk));
  for (int i : {0, 2, 4}) ASSERT_TRUE(a.free(rs[static_cast<std::size_t>(i)]).has_value());
  auto r = a.allocate(8 * kib);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.code(), errc::out_of_memory);
  const std::string& m = r.err().message;
  EXPECT_TRUE(contains(m, "8192 bytes")) << m;
  EXPECT_TRUE(contains(m, "12288 bytes free")) << m;
  EXPECT_TRUE(contains(m, "largest free block 4096")) << m;
  expect_valid(a);  // the failed call changed nothing
}

TEST(RangeAllocatorTest, AlignmentBelowBlockSizeIsNaturallySatisfied) {
  range_allocator a = make(mib);
  (void)must_allocate(a, chunk);  // push the next blocks off offset 0
  const range r = must_allocate(a, 16 * kib, 16 * kib);
  EXPECT_EQ(r.block_size, 16 * kib);
  EXPECT_EQ(r.offset % (16 * kib), 0U);
  EXPECT_NE(r.offset, 0U);
}

TEST(RangeAllocatorTest, AlignmentAboveBlockSizeRoundsTheBlockUp) {
  range_allocator a = make(mib);
  (void)must_allocate(a, chunk);
  const range r = must_allocate(a, chunk, 64 * kib);
  EXPECT_EQ(r.offset % (64 * kib), 0U);
  EXPECT_EQ(r.block_size, 64 * kib);
  EXPECT_EQ(r.size, chunk);
  EXPECT_EQ(a.stats().internal_fragmentation_bytes, 64 * kib - chunk);
}

TEST(RangeAllocatorTest, AlignmentBelowMinBlockIsAccepted) {
  range_allocator a = make(mib);
  const range r = must_allocate(a, 100, 256);
  EXPECT_EQ(r.block_size, chunk);
}

// ---------------------------------------------------------------- bad frees

TEST(RangeAllocatorTest, DoubleFreeIsBadStateAndChangesNothing) {
  range_allocator a = make(mib);
  const range keep = must_allocate(a, chunk);
  const range r = must_allocate(a, chunk);
  ASSERT_TRUE(a.free(r).has_value());
  const auto before = a.stats();
  const status again = a.free(r);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.code(), errc::bad_state);
  EXPECT_TRUE(contains(again.err().message, "double free")) << again.err().message;
  EXPECT_EQ(a.stats().free_blocks, before.free_blocks);
  EXPECT_EQ(a.free_bytes(), before.free_bytes);
  expect_valid(a);
  ASSERT_TRUE(a.free(keep).has_value());
}

TEST(RangeAllocatorTest, StaleRangeAfterReuseIsDetectedById) {
  range_allocator a = make(mib);
  const range old = must_allocate(a, chunk);
  ASSERT_TRUE(a.free(old).has_value());
  const range reused = must_allocate(a, chunk);
  ASSERT_EQ(reused.offset, old.offset);  // same place, new allocation
  ASSERT_NE(reused.id, old.id);
  const status s = a.free(old);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.code(), errc::bad_state);
  EXPECT_TRUE(contains(s.err().message, "id " + std::to_string(reused.id))) << s.err().message;
  EXPECT_TRUE(a.free(reused).has_value());  // the live allocation is untouched
}

TEST(RangeAllocatorTest, UnknownRangesAreInvalidArgument) {
  range_allocator a = make(mib);
  const range r = must_allocate(a, 16 * kib);

  range outside = r;
  outside.offset = mib;
  EXPECT_EQ(a.free(outside).code(), errc::invalid_argument);

  range inside = r;
  inside.offset = r.offset + chunk;
  const status s = a.free(inside);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.code(), errc::invalid_argument);
  EXPECT_TRUE(contains(s.err().message, "not its start")) << s.err().message;

  range wrong_size = r;
  wrong_size.size = 100;
  EXPECT_EQ(a.free(wrong_size).code(), errc::invalid_argument);

  range never{};  // offset 0 is r itself here, but id 0 is never handed out
  never.size = r.size;
  never.block_size = r.block_size;
  never.offset = r.offset;
  EXPECT_EQ(a.free(never).code(), errc::bad_state);

  EXPECT_EQ(a.stats().allocation_count, 1U);
  EXPECT_TRUE(a.free(r).has_value());
  expect_valid(a);
}

// The counters a refused free must leave as they were.
struct counters {
  std::uint64_t free_bytes, used_block_bytes, used_requested_bytes, allocation_count;
  std::array<std::uint64_t, range_allocator_max_orders> free_blocks;
  friend bool operator==(const counters&, const counters&) = default;
};

counters counters_of(const range_allocator& a) {
  const auto s = a.stats();
  return {s.free_bytes, s.used_block_bytes, s.used_requested_bytes, s.allocation_count,
          s.free_blocks};
}

TEST(RangeAllocatorTest, StaleHandleWhoseNodeWasReusedIsBadState) {
  range_allocator a = make(mib);
  const range keep = must_allocate(a, chunk);  // old's buddy: old cannot merge away
  const range old = must_allocate(a, chunk);
  ASSERT_TRUE(a.free(old).has_value());
  const range reused = must_allocate(a, chunk);
  // Same offset and the same node: only the id tells the stale handle apart.
  ASSERT_EQ(reused.offset, old.offset);
  ASSERT_EQ(reused.node, old.node);
  const auto before = counters_of(a);
  const status s = a.free(old);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.code(), errc::bad_state);
  EXPECT_TRUE(contains(s.err().message, "stale range")) << s.err().message;
  EXPECT_TRUE(contains(s.err().message, "id " + std::to_string(reused.id))) << s.err().message;
  EXPECT_TRUE(counters_of(a) == before);
  expect_valid(a);
  EXPECT_TRUE(a.free(reused).has_value());
  EXPECT_TRUE(a.free(keep).has_value());
  expect_valid(a);
}

TEST(RangeAllocatorTest, StaleHandleWhoseNodeWasMergedAwayIsBadState) {
  range_allocator a = make(mib);
  const range old = must_allocate(a, chunk);
  ASSERT_TRUE(a.free(old).has_value());  // merges back into the root
  // A bigger block at the same offset: old.node is no longer that block's.
  const range bigger = must_allocate(a, 64 * kib);
  ASSERT_EQ(bigger.offset, old.offset);
  ASSERT_NE(bigger.node, old.node);
  const auto before = counters_of(a);
  const status s = a.free(old);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.code(), errc::bad_state);
  EXPECT_TRUE(contains(s.err().message, "id " + std::to_string(bigger.id))) << s.err().message;
  EXPECT_TRUE(counters_of(a) == before);
  expect_valid(a);

  // Freed again, its offset lies in a free block: the double-free report.
  ASSERT_TRUE(a.free(bigger).has_value());
  const status twice = a.free(old);
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.code(), errc::bad_state);
  EXPECT_TRUE(contains(twice.err().message, "double free")) << twice.err().message;
  expect_valid(a);
}

TEST(RangeAllocatorTest, ForgedNodeIndexIsRefusedWithoutTouchingState) {
  range_allocator a = make(mib);
  const range x = must_allocate(a, chunk);
  const range y = must_allocate(a, 16 * kib);
  const range z = must_allocate(a, 3 * chunk);
  ASSERT_TRUE(a.free(z).has_value());  // z.node is now free (or merged away)
  const auto before = counters_of(a);

  // x's offset, size and id, each time another node: another live
  // allocation's, a freed one's, a split parent's (node 0 is the split root),
  // one past the pool, and "none".
  for (std::uint64_t node : {y.node, z.node, std::uint64_t{0}, std::uint64_t{1} << 31,
                             range{}.node}) {
    range forged = x;
    forged.node = node;
    const status s = a.free(forged);
    ASSERT_FALSE(s.has_value()) << "node " << node;
    EXPECT_EQ(s.code(), errc::invalid_argument) << "node " << node;
    EXPECT_TRUE(contains(s.err().message, "node " + std::to_string(node))) << s.err().message;
    EXPECT_TRUE(counters_of(a) == before) << "node " << node;
    expect_valid(a);
  }

  // y's node with x's offset: the offset is checked as before (x's block is
  // allocated, so the id check names x's allocation), and y stays live.
  range mixed = y;
  mixed.offset = x.offset;
  const status s = a.free(mixed);
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.code(), errc::bad_state);
  EXPECT_TRUE(counters_of(a) == before);
  expect_valid(a);

  EXPECT_TRUE(a.free(x).has_value());
  EXPECT_TRUE(a.free(y).has_value());
  EXPECT_EQ(a.free_bytes(), mib);
  expect_valid(a);
}

TEST(RangeAllocatorTest, StressRandomAllocFreeKeepsInvariants) {
  // 200k operations on a heap small enough to fill (4096 chunks), so merges,
  // splits and out-of-memory all happen; every 64th free is tried twice.
  const std::uint64_t size = 4096 * chunk;
  range_allocator a = make(size);
  const auto initial = counters_of(a);
  std::mt19937_64 rng(11);
  std::vector<range> live;
  int frees = 0;
  int refused = 0;
  int out_of_memory = 0;
  for (int step = 1; step <= 200000; ++step) {
    const bool fill = (step / 20000) % 2 == 0;
    if (live.empty() || rng() % 100 < (fill ? 60U : 40U)) {
      auto r = a.allocate(1 + rng() % (32 * kib));
      if (r) {
        live.push_back(*r);
      } else {
        ASSERT_EQ(r.code(), errc::out_of_memory) << r.err().message;
        ++out_of_memory;
      }
    } else {
      const std::size_t i = rng() % live.size();
      const range r = live[i];
      live[i] = live.back();
      live.pop_back();
      ASSERT_TRUE(a.free(r).has_value()) << "step " << step;
      if (++frees % 64 == 0) {
        const auto before = counters_of(a);
        const status again = a.free(r);
        ASSERT_FALSE(again.has_value()) << "step " << step;
        ASSERT_EQ(again.code(), errc::bad_state) << again.err().message;
        ASSERT_TRUE(counters_of(a) == before) << "step " << step;
        ++refused;
      }
    }
    ASSERT_EQ(a.stats().allocation_count, live.size());
    if (step % 10000 == 0) {
      const status v = a.validate();
      ASSERT_TRUE(v.has_value()) << "step " << step << ": " << v.err().message;
    }
  }
  EXPECT_GT(refused, 100);
  EXPECT_GT(out_of_memory, 100);  // the full regime was reached
  for (const range& r : live) ASSERT_TRUE(a.free(r).has_value());
  EXPECT_TRUE(counters_of(a) == initial);
  expect_valid(a);
}

// ------------------------------------------------------------- fragmentation

TEST(RangeAllocatorTest, FragmentationFiguresOnCheckerboardPattern) {
  // 8 chunks, every other one freed: 4 free chunks, none mergeable.
  range_allocator a = make(8 * chunk);
  std::vector<range> rs;
  for (int i = 0; i < 8; ++i) rs.push_back(must_allocate(a, 3000));
  for (std::size_t i = 0; i < 8; i += 2) ASSERT_TRUE(a.free(rs[i]).has_value());
  const auto s = a.stats();
  EXPECT_EQ(s.free_bytes, 4 * chunk);
  EXPECT_EQ(s.largest_free_block, chunk);
  EXPECT_EQ(s.free_blocks[0], 4U);
  // external = 1 - largest_free / free_bytes = 1 - 1/4
  EXPECT_DOUBLE_EQ(s.external_fragmentation, 0.75);
  // 4 live blocks of 4096 bytes holding 3000 bytes each.
  EXPECT_EQ(s.used_block_bytes, 4 * chunk);
  EXPECT_EQ(s.used_requested_bytes, 4 * 3000U);
  EXPECT_EQ(s.internal_fragmentation_bytes, 4 * (chunk - 3000));
  EXPECT_DOUBLE_EQ(s.internal_fragmentation, static_cast<double>(chunk - 3000) / chunk);
  EXPECT_EQ(s.used_block_bytes + s.free_bytes, s.size);
  // Half the memory is free, yet an 8 KiB request cannot be served.
  EXPECT_EQ(a.allocate(2 * chunk).code(), errc::out_of_memory);
}

TEST(RangeAllocatorTest, FullAllocatorReportsZeroFragmentation) {
  range_allocator a = make(4 * chunk);
  (void)must_allocate(a, 4 * chunk);
  const auto s = a.stats();
  EXPECT_EQ(s.free_bytes, 0U);
  EXPECT_EQ(s.largest_free_block, 0U);
  EXPECT_EQ(s.external_fragmentation, 0.0);
  EXPECT_EQ(s.internal_fragmentation, 0.0);
}

// ---------------------------------------------------------------- randomized

// Reference model: the live allocations by offset. A buddy allocator's free
// blocks are exactly the maximal aligned blocks (inside the roots) that hold
// no live allocation, so the model derives the expected free-block counts
// independently of the allocator's tree.
class reference_model {
 public:
  explicit reference_model(std::uint64_t size) : size_(size) {}

  void add(const range& r) { live_.emplace(r.offset, r); }
  void remove(const range& r) { live_.erase(r.offset); }
  const std::map<std::uint64_t, range>& live() const { return live_; }

  // Checks the new range against every invariant the model knows.
  void check_new(const range& r, std::uint64_t size, std::uint64_t alignment) const {
    EXPECT_EQ(r.size, size);
    EXPECT_TRUE(std::has_single_bit(r.block_size));
    EXPECT_GE(r.block_size, std::max({size, chunk, alignment}));
    EXPECT_LT(r.block_size / 2, std::max({size, chunk, alignment}));
    EXPECT_EQ(r.offset % r.block_size, 0U);
    if (alignment != 0) {
      EXPECT_EQ(r.offset % alignment, 0U);
    }
    EXPECT_LE(r.offset + r.block_size, size_);
    // No overlap with the neighbours by offset (blocks, not just requests).
    auto next = live_.lower_bound(r.offset);
    if (next != live_.end()) {
      EXPECT_LE(r.offset + r.block_size, next->first);
    }
    if (next != live_.begin()) {
      auto prev = std::prev(next);
      EXPECT_LE(prev->first + prev->second.block_size, r.offset);
    }
  }

  std::array<std::uint64_t, range_allocator_max_orders> free_blocks() const {
    std::array<std::uint64_t, range_allocator_max_orders> counts{};
    const std::uint64_t chunks = size_ / chunk;
    std::uint64_t offset = 0;
    for (int order = std::bit_width(chunks) - 1; order >= 0; --order) {
      if ((chunks >> order & 1U) == 0) continue;
      count(offset, static_cast<unsigned>(order), counts);
      offset += chunk << order;
    }
    return counts;
  }

  std::uint64_t used_block_bytes() const {
    std::uint64_t sum = 0;
    for (const auto& [off, r] : live_) sum += r.block_size;
    return sum;
  }
  std::uint64_t used_requested_bytes() const {
    std::uint64_t sum = 0;
    for (const auto& [off, r] : live_) sum += r.size;
    return sum;
  }

 private:
  void count(std::uint64_t offset, unsigned order,
             std::array<std::uint64_t, range_allocator_max_orders>& counts) const {
    const std::uint64_t bytes = chunk << order;
    auto it = live_.lower_bound(offset);
    const bool starts_inside = it != live_.end() && it->first < offset + bytes;
    // Blocks are aligned and nested, so an allocation starting before this
    // block either ends before it or contains it (then we would not be here).
    if (!starts_inside) {
      ++counts[order];
      return;
    }
    if (it->first == offset && it->second.block_size == bytes) return;  // allocated
    ASSERT_GT(order, 0U) << "allocation " << it->first << " straddles a chunk";
    count(offset, order - 1, counts);
    count(offset + bytes / 2, order - 1, counts);
  }

  std::uint64_t size_;
  std::map<std::uint64_t, range> live_;
};

TEST(RangeAllocatorTest, RandomOperationsMatchReferenceModel) {
  // 1000 chunks (not a power of two: roots 512+256+128+64+32+8).
  const std::uint64_t size = 1000 * chunk;
  range_allocator a = make(size);
  const auto initial = a.stats();
  reference_model model(size);
  std::mt19937_64 rng(20240611);
  std::vector<range> live;
  int allocations = 0;
  int out_of_memory = 0;

  for (int step = 0; step < 6000; ++step) {
    // Drift between filling and draining so both full and empty regimes occur.
    const int phase = (step / 1000) % 2;
    const bool do_alloc = live.empty() || (rng() % 100) < (phase == 0 ? 70U : 35U);
    if (do_alloc) {
      const std::uint64_t size_req = 1 + rng() % (48 * kib);
      std::uint64_t alignment = 0;
      if (rng() % 8 == 0) alignment = std::uint64_t{1} << (8 + rng() % 10);  // 256 B .. 128 KiB
      auto r = a.allocate(size_req, alignment);
      const std::uint64_t need = std::bit_ceil(std::max({size_req, chunk, alignment}));
      if (!r) {
        ASSERT_EQ(r.code(), errc::out_of_memory) << r.err().message;
        // Legitimate only if the model has no free block that large.
        const auto counts = model.free_blocks();
        for (unsigned k = 0; k < range_allocator_max_orders; ++k) {
          if ((chunk << k) >= need) {
            ASSERT_EQ(counts[k], 0U) << "order " << k << " had room";
          }
        }
        ++out_of_memory;
        continue;
      }
      model.check_new(*r, size_req, alignment);
      model.add(*r);
      live.push_back(*r);
      ++allocations;
    } else {
      const std::size_t i = rng() % live.size();
      ASSERT_TRUE(a.free(live[i]).has_value());
      model.remove(live[i]);
      live[i] = live.back();
      live.pop_back();
    }
    const auto s = a.stats();
    ASSERT_EQ(s.used_block_bytes, model.used_block_bytes());
    ASSERT_EQ(s.used_requested_bytes, model.used_requested_bytes());
    ASSERT_EQ(s.free_bytes, size - model.used_block_bytes());
    ASSERT_EQ(s.allocation_count, live.size());
    ASSERT_EQ(s.free_blocks, model.free_blocks()) << "step " << step;
    if (step % 256 == 0) expect_valid(a);
  }
  EXPECT_GT(allocations, 1000);
  EXPECT_GT(out_of_memory, 0);  // the full regime was reached

  // Free the rest in random order: back to exactly the initial state.
  std::shuffle(live.begin(), live.end(), rng);
  for (const range& r : live) ASSERT_TRUE(a.free(r).has_value());
  const auto end = a.stats();
  EXPECT_EQ(end.free_bytes, initial.free_bytes);
  EXPECT_EQ(end.used_block_bytes, 0U);
  EXPECT_EQ(end.used_requested_bytes, 0U);
  EXPECT_EQ(end.allocation_count, 0U);
  EXPECT_EQ(end.free_blocks, initial.free_blocks);
  EXPECT_EQ(end.largest_free_block, initial.largest_free_block);
  expect_valid(a);
}

}  // namespace
}  // namespace xbuf
