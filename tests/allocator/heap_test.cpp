// SPDX-License-Identifier: MIT
// Both kinds of heap (allocator/vram_heap.hpp, allocator/host_heap.hpp) over
// a real sim backend: accounting, delayed free, errors, stats.
#include "allocator/heap.hpp"

#include <gtest/gtest.h>

#include <memory>

#include "allocator/host_heap.hpp"
#include "allocator/vram_heap.hpp"
#include "backends/sim/sim_backend.hpp"

namespace xbuf {
namespace {

constexpr std::uint64_t KiB = 1024;

struct sim_fixture : ::testing::Test {
  std::unique_ptr<sim_backend> sim;
  void SetUp() override {
    auto s = create_sim_backend(make_sim_config(1, 1024 * KiB));
    ASSERT_TRUE(s) << s.err().describe();
    sim = std::move(*s);
  }
};

using VramHeapTest = sim_fixture;
using HostHeapTest = sim_fixture;

TEST_F(VramHeapTest, AllocationsComeFromOneArenaAndCountBlockSizes) {
  auto h = vram_heap::create(*sim, 0, 256 * KiB, 4 * KiB);
  ASSERT_TRUE(h) << h.err().describe();
  EXPECT_EQ((*h)->name(), "vram0");
  auto a = (*h)->allocate(5 * KiB, 0);  // a buddy rounds 5 KiB up to 8 KiB
  auto b = (*h)->allocate(4 * KiB, 0);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->bytes, 8 * KiB);
  EXPECT_EQ(a->span.size, 5 * KiB);
  EXPECT_EQ(a->span.block, b->span.block) << "one arena block behind every range";
  EXPECT_NE(a->span.offset, b->span.offset);
  EXPECT_EQ((*h)->used(), 12 * KiB);
  EXPECT_FALSE((*h)->release(std::move(*a), {})) << "no fences: freed at once";
  EXPECT_EQ((*h)->used(), 4 * KiB);
}

TEST_F(VramHeapTest, FullHeapNamesItselfAndTheLargestFreeBlock) {
  auto h = vram_heap::create(*sim, 0, 16 * KiB, 4 * KiB);
  ASSERT_TRUE(h);
  auto a = (*h)->allocate(16 * KiB, 0);
  ASSERT_TRUE(a);
  auto b = (*h)->allocate(4 * KiB, 0);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::out_of_memory);
  EXPECT_NE(b.err().message.find("vram0 is full"), std::string::npos) << b.err().message;
  EXPECT_NE(b.err().message.find("largest free block 0 B"), std::string::npos) << b.err().message;
}

TEST_F(VramHeapTest, FragmentationIsReported) {
  auto h = vram_heap::create(*sim, 0, 16 * KiB, 4 * KiB);
  ASSERT_TRUE(h);
  auto a = (*h)->allocate(4 * KiB, 0);
  auto b = (*h)->allocate(4 * KiB, 0);
  auto c = (*h)->allocate(4 * KiB, 0);
  ASSERT_TRUE(a && b && c);
  (void)(*h)->release(std::move(*a), {});
  (void)(*h)->release(std::move(*c), {});  // free: 4 KiB at 0, 4 KiB at 8 KiB, 4 KiB at 12 KiB
  const auto s = (*h)->stats();
  EXPECT_EQ(s.capacity, 16 * KiB);
  EXPECT_EQ(s.used, 4 * KiB);
  EXPECT_LT(s.largest_free_block, 12 * KiB);
  EXPECT_GT(s.fragmentation, 0.0);
}

TEST_F(VramHeapTest, ArenaLargerThanTheDeviceFailsNamingTheHeap) {
  auto h = vram_heap::create(*sim, 0, 64ull << 20, 4 * KiB);  // the device has 1 MiB
  ASSERT_FALSE(h);
  EXPECT_NE(h.err().message.find("vram0 arena"), std::string::npos) << h.err().message;
}

TEST_F(HostHeapTest, EachAllocationIsItsOwnBlockCountedAgainstCapacity) {
  auto h = host_heap::create(*sim, false, 64 * KiB);
  EXPECT_EQ(h->name(), "pageable");
  auto a = h->allocate(16 * KiB, 0);
  auto b = h->allocate(16 * KiB, 0);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->span.block, b->span.block);
  EXPECT_EQ(h->used(), 32 * KiB);
  EXPECT_EQ(h->stats().largest_free_block, 32 * KiB);
  EXPECT_EQ(h->stats().fragmentation, 0.0);
  auto c = h->allocate(48 * KiB, 0);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.code(), errc::out_of_memory);
  EXPECT_NE(c.err().message.find("pageable is full"), std::string::npos) << c.err().message;
}

TEST_F(HostHeapTest, LargeAlignmentOverAllocatesAndOffsets) {
  auto h = host_heap::create(*sim, true, 1024 * KiB);
  EXPECT_EQ(h->name(), "pinned");
  auto a = h->allocate(4 * KiB, 64 * KiB);
  ASSERT_TRUE(a) << a.err().describe();
  EXPECT_EQ(a->bytes, 68 * KiB);
  EXPECT_EQ((a->span.block->device_ptr + a->span.offset) % (64 * KiB), 0u);
}

TEST_F(HostHeapTest, ReleaseWaitsForFencesAndReapFreesAfterThem) {
  auto h = host_heap::create(*sim, false, 64 * KiB);
  auto a = h->allocate(16 * KiB, 0);
  ASSERT_TRUE(a);
  auto f = fence::create(fence::allocate_context(), 1);
  EXPECT_TRUE(h->release(std::move(*a), {f, fence::signaled()}));
  EXPECT_EQ(h->used(), 16 * KiB) << "delayed-free bytes still count as used";
  EXPECT_EQ(h->delayed_bytes(), 16 * KiB);
  ASSERT_EQ(h->pending_fences().size(), 1u);
  EXPECT_EQ(h->pending_fences()[0], f);
  EXPECT_EQ(h->reap(), 0u);
  ASSERT_TRUE(f->signal());
  EXPECT_EQ(h->reap(), 1u);
  EXPECT_EQ(h->used(), 0u);
  EXPECT_TRUE(h->pending_fences().empty());
  EXPECT_EQ(h->stats().delayed_frees, 0u);
}

}  // namespace
}  // namespace xbuf
