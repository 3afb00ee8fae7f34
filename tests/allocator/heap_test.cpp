// SPDX-License-Identifier: MIT
// The kinds of heap (allocator/vram_heap.hpp, host_heap.hpp, block_heap.hpp)
// over a real sim backend: accounting, delayed free, errors, stats; host
// chunks with real memfds, mappings and exported fds.
#include "allocator/heap.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <vector>

#include "allocator/block_heap.hpp"
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
using HostChunkTest = sim_fixture;
using BlockHeapTest = sim_fixture;

constexpr std::uint64_t MiB = 1024 * KiB;

// Open fds of this process, from /proc/self/fd.
int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 65536; ++fd) n += ::fcntl(fd, F_GETFD) != -1 ? 1 : 0;
  return n;
}

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
  // The CPU's address (host blocks have no device address here): the old
  // heap aligned device_ptr, 0 for host memory, so this held by accident.
  ASSERT_EQ(a->span.block->device_ptr, 0u);
  EXPECT_EQ((reinterpret_cast<std::uintptr_t>(a->span.block->host_ptr) + a->span.offset) % (64 * KiB), 0u);
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

// ---------------------------------------------------------------- host chunks

// Before: every host allocation was a memfd of its own (the issue: 52,756
// buffers of 4 KiB took the daemon's fd limit). Now 2,000 of them share
// one chunk: one fd, one mapping.
TEST_F(HostChunkTest, SmallAllocationsShareAChunkAndCostNoFdEach) {
  auto h = host_heap::create(*sim, false, 1024 * MiB);
  ASSERT_EQ(h->small_max(), 1 * MiB);
  const int fds_before = open_fds();
  std::vector<heap_allocation> live;
  for (int i = 0; i < 2000; ++i) {
    auto a = h->allocate(4 * KiB, 0);
    ASSERT_TRUE(a) << a.err().describe();
    EXPECT_TRUE(a->shares_block);
    EXPECT_FALSE(a->needs_clear) << "a chunk range comes back from the kernel zeroed";
    live.push_back(std::move(*a));
  }
  EXPECT_EQ(h->chunks(), 1u) << "2,000 x 4 KiB fit one 16 MiB chunk";
  EXPECT_LE(open_fds() - fds_before, 1) << "one chunk, one fd";
  EXPECT_EQ(h->used(), 2000 * 4 * KiB);
  for (auto& a : live) h->release(std::move(a), {});
  EXPECT_EQ(h->used(), 0u);
}

TEST_F(HostChunkTest, LargeOrAlignedAllocationsGetABlockOfTheirOwn) {
  auto h = host_heap::create(*sim, false, 1024 * MiB);
  auto small = h->allocate(1 * MiB, 0);
  auto large = h->allocate(1 * MiB + 1, 0);
  auto aligned = h->allocate(4 * KiB, 64 * KiB);
  ASSERT_TRUE(small && large && aligned);
  EXPECT_TRUE(small->shares_block);
  EXPECT_FALSE(large->shares_block);
  EXPECT_EQ(large->bytes, 1 * MiB + 4 * KiB) << "own blocks count page-rounded bytes";
  EXPECT_FALSE(aligned->shares_block) << "a chunk's mapping is only page-aligned";
  EXPECT_NE(large->span.block, small->span.block);
}

// A freed range keeps its pages (faulting them in again is most of a small
// move's cost), so it may hold the bytes of the buffer before (which may be
// another tenant's): the next buffer there is handed out needs_clear, and
// a range no buffer ever held is not.
TEST_F(HostChunkTest, AFreedRangeIsMarkedForClearingBeforeItsNextBuffer) {
  auto h = host_heap::create(*sim, true, 256 * MiB);
  auto a = h->allocate(64 * KiB, 0);
  ASSERT_TRUE(a) << a.err().describe();
  EXPECT_FALSE(a->needs_clear) << "a range no buffer held reads as zero from the kernel";
  char* p = static_cast<char*>(a->span.block->host_ptr) + a->span.offset;
  std::memset(p, 0x5a, 64 * KiB);
  const auto offset = a->span.offset;
  h->release(std::move(*a), {});
  auto b = h->allocate(64 * KiB, 0);
  ASSERT_TRUE(b);
  ASSERT_EQ(b->span.offset, offset) << "the buddy hands the same range out again";
  EXPECT_TRUE(b->needs_clear) << "the range held a buffer: the manager clears it first";
  auto c = h->allocate(4 * KiB, 0);
  ASSERT_TRUE(c);
  EXPECT_FALSE(c->needs_clear) << "only ranges over used pages are marked";
}

// An exported chunk range reaches its own pages only; once freed, the old
// fd never sees the bytes of the buffer that gets the range next.
TEST_F(HostChunkTest, AnExportedRangeReachesOneBufferAndNothingAfterItsFree) {
  auto h = host_heap::create(*sim, false, 1024 * MiB);
  auto a = h->allocate(4 * KiB, 0);
  auto b = h->allocate(4 * KiB, 0);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->span.block, b->span.block);
  char* pa = static_cast<char*>(a->span.block->host_ptr) + a->span.offset;
  char* pb = static_cast<char*>(b->span.block->host_ptr) + b->span.offset;
  std::memset(pa, 'A', 4 * KiB);
  std::memset(pb, 'B', 4 * KiB);
  auto e = sim->export_fd(a->span);
  ASSERT_TRUE(e) << e.err().describe();
  struct stat st {};
  ASSERT_EQ(::fstat(e->fd, &st), 0);
  EXPECT_EQ(st.st_size, 4 * 1024) << "the fd is the buffer's page, not the 16 MiB chunk";
  auto* view = static_cast<char*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, e->fd, 0));
  ASSERT_NE(view, MAP_FAILED);
  EXPECT_EQ(view[0], 'A') << "the export carries the buffer's bytes";
  view[1] = 'x';
  EXPECT_EQ(pa[1], 'x') << "and the daemon's address still shows the same pages";
  EXPECT_EQ(pb[0], 'B');
  const auto offset = a->span.offset;
  h->release(std::move(*a), {});
  auto c = h->allocate(4 * KiB, 0);
  ASSERT_TRUE(c);
  ASSERT_EQ(c->span.offset, offset);
  char* pc = static_cast<char*>(c->span.block->host_ptr) + c->span.offset;
  EXPECT_EQ(pc[1], 0) << "the next buffer starts zeroed";
  std::memset(pc, 'C', 4 * KiB);
  EXPECT_EQ(view[0], 'A') << "the old fd keeps its own pages";
  EXPECT_EQ(view[2], 'A');
  ::munmap(view, 4096);
  ::close(e->fd);
}

TEST_F(HostChunkTest, EmptyChunksGoBackButOneSpareStays) {
  auto h = host_heap::create(*sim, false, 1024 * MiB);
  std::vector<heap_allocation> live;
  for (int i = 0; i < 24; ++i) {  // 24 MiB: two chunks
    auto a = h->allocate(1 * MiB, 0);
    ASSERT_TRUE(a);
    live.push_back(std::move(*a));
  }
  EXPECT_EQ(h->chunks(), 2u);
  for (auto& a : live) h->release(std::move(a), {});
  EXPECT_EQ(h->chunks(), 1u) << "one empty chunk kept as a spare";
}

TEST_F(HostChunkTest, ASmallCapacityTurnsChunkingOff) {
  EXPECT_EQ(host_heap::create(*sim, true, 32 * MiB)->small_max(), 256 * KiB) << "8 pinned chunks of 4 MiB";
  EXPECT_EQ(host_heap::create(*sim, true, 16 * MiB)->small_max(), 0u) << "one chunk would be a quarter of it";
  auto h = host_heap::create(*sim, false, 64 * MiB);
  EXPECT_EQ(h->small_max(), 0u);
  auto a = h->allocate(4 * KiB, 0);
  ASSERT_TRUE(a);
  EXPECT_FALSE(a->shares_block);
}

// ---------------------------------------------------------------- host pool

using HostPoolTest = sim_fixture;

// A freed own block keeps its pages for the next allocation of its size:
// no memfd_create, no faults. Reused, it is marked for clearing.
TEST_F(HostPoolTest, AFreedBlockIsReusedForTheSameSizeAndMarkedForClearing) {
  auto h = host_heap::create(*sim, false, 64 * MiB);  // no chunks: every allocation a block
  ASSERT_EQ(h->small_max(), 0u);
  ASSERT_EQ(h->pool_limit(), 8 * MiB);
  auto a = h->allocate(1 * MiB, 0);
  ASSERT_TRUE(a) << a.err().describe();
  EXPECT_FALSE(a->needs_clear) << "a fresh memfd reads as zero";
  const memory_block* block = a->span.block.get();
  std::memset(a->span.block->host_ptr, 0x5a, 1 * MiB);
  h->release(std::move(*a), {});
  EXPECT_EQ(h->pooled_blocks(), 1u);
  EXPECT_EQ(h->pooled_bytes(), 1 * MiB);
  EXPECT_EQ(h->used(), 0u) << "pooled bytes are free for the heap";
  auto other = h->allocate(2 * MiB, 0);
  ASSERT_TRUE(other);
  EXPECT_NE(other->span.block.get(), block) << "only an allocation of the same bytes takes it";
  auto b = h->allocate(1 * MiB, 0);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->span.block.get(), block);
  EXPECT_TRUE(b->needs_clear) << "it holds the previous buffer's bytes";
  EXPECT_EQ(h->pooled_blocks(), 0u);
}

// A block whose own fd was exported may be mapped by its receivers for as
// long as they like: it never holds another buffer, and its pages keep
// what the receivers see.
TEST_F(HostPoolTest, AnExportedBlockIsNeverPooled) {
  auto h = host_heap::create(*sim, false, 64 * MiB);
  auto a = h->allocate(1 * MiB, 0);
  ASSERT_TRUE(a);
  std::memset(a->span.block->host_ptr, 'A', 1 * MiB);
  auto e = sim->export_fd(a->span);
  ASSERT_TRUE(e) << e.err().describe();
  auto* view = static_cast<char*>(::mmap(nullptr, 1 * MiB, PROT_READ, MAP_SHARED, e->fd, 0));
  ASSERT_NE(view, MAP_FAILED);
  struct stat old_st {};
  ASSERT_EQ(::fstat(e->fd, &old_st), 0);
  h->release(std::move(*a), {});
  EXPECT_EQ(h->pooled_blocks(), 0u) << "closed, not pooled";
  auto b = h->allocate(1 * MiB, 0);
  ASSERT_TRUE(b);
  struct stat new_st {};
  ASSERT_EQ(::fstat(b->span.block->fd, &new_st), 0);
  EXPECT_NE(new_st.st_ino, old_st.st_ino) << "the exported memory file holds a buffer again";
  std::memset(b->span.block->host_ptr, 'B', 1 * MiB);
  EXPECT_EQ(view[0], 'A');
  EXPECT_EQ(view[1 * MiB - 1], 'A') << "the receiver sees its own bytes, never the next buffer's";
  ::munmap(view, 1 * MiB);
  ::close(e->fd);
}

TEST_F(HostPoolTest, ThePoolIsBoundedInBytesAndBlocks) {
  auto h = host_heap::create(*sim, false, 64 * MiB);  // pool limit 8 MiB
  std::vector<heap_allocation> live;
  for (int i = 0; i < 12; ++i) {
    auto a = h->allocate(1 * MiB, 0);
    ASSERT_TRUE(a);
    live.push_back(std::move(*a));
  }
  for (auto& a : live) h->release(std::move(a), {});
  EXPECT_EQ(h->pooled_bytes(), 8 * MiB);
  EXPECT_EQ(h->pooled_blocks(), 8u);
  live.clear();
  for (int i = 0; i < 40; ++i) {
    auto a = h->allocate(8 * KiB, 0);
    ASSERT_TRUE(a);
    live.push_back(std::move(*a));
  }
  for (auto& a : live) h->release(std::move(a), {});
  EXPECT_LE(h->pooled_blocks(), 32u) << "each pooled block is an fd";
  EXPECT_LE(h->pooled_bytes(), 8 * MiB);
  h->trim_pool();
  EXPECT_EQ(h->pooled_blocks(), 0u);
  EXPECT_EQ(h->pooled_bytes(), 0u);
}

// Pooled pinned blocks stay page-locked and charged to the backend's pinned
// cap: an allocation the cap refuses gets the pool's bytes back first.
TEST_F(HostPoolTest, ThePoolNeverMakesAnAllocationFail) {
  sim_config c = make_sim_config(1, 1 * MiB);
  c.host.pinned_limit_bytes = 4 * MiB;
  c.host.pinned_fallback_unlocked = true;
  auto s = create_sim_backend(c);
  ASSERT_TRUE(s);
  auto h = host_heap::create(**s, true, 16 * MiB);  // no chunks; pool limit 2 MiB
  ASSERT_EQ(h->small_max(), 0u);
  auto a = h->allocate(2 * MiB, 0);
  ASSERT_TRUE(a) << a.err().describe();
  h->release(std::move(*a), {});
  ASSERT_EQ(h->pooled_bytes(), 2 * MiB);
  auto b = h->allocate(3 * MiB, 0);  // 2 pooled + 3 > the 4 MiB cap
  ASSERT_TRUE(b) << b.err().describe();
  EXPECT_EQ(h->pooled_bytes(), 0u);
}

// ---------------------------------------------------------------- block heap

TEST_F(BlockHeapTest, EachVramAllocationIsADeviceBlockOfItsOwnAndIsCleared) {
  auto h = block_heap::create(*sim, placement::vram(0), 64 * KiB);
  auto a = h->allocate(5 * KiB, 0);
  auto b = h->allocate(4 * KiB, 0);
  ASSERT_TRUE(a && b) << (a ? b.err().describe() : a.err().describe());
  EXPECT_NE(a->span.block, b->span.block);
  EXPECT_EQ(a->span.block->kind, memory_kind::device);
  EXPECT_EQ(a->bytes, 8 * KiB) << "rounded to the device granule";
  EXPECT_TRUE(a->needs_clear) << "a driver may hand out pages this process freed";
  EXPECT_FALSE(a->shares_block);
  EXPECT_EQ(h->used(), 12 * KiB);
  auto c = h->allocate(56 * KiB, 0);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.code(), errc::out_of_memory);
  EXPECT_NE(c.err().message.find("vram0 is full"), std::string::npos) << c.err().message;
}

}  // namespace
}  // namespace xbuf
