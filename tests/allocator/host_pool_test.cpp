// SPDX-License-Identifier: MIT
// Reused memory and tenancy (DESIGN.md, "Memory is zeroed before it reaches
// a new owner", "Exported memory is not reused while anyone can reach it"):
// freed host blocks are pooled with their pages and VRAM ranges keep theirs
// (allocator/host_heap.hpp, move_job.hpp). These tests try to read a
// previous owner's bytes through reused memory - a new buffer, a move's
// destination, an fd - and check an exported block is never reused.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "tests/common/sim_manager.hpp"

namespace xbuf {
namespace {

using test::KiB;
using test::MiB;
using test::request;
using test::sim_manager;

constexpr owner_id alice = 1;
constexpr owner_id bob = 2;

// Writes `value` over all of buffer `id` through CPU access; returns where
// the manager mapped it.
void* write_all(memory_manager& mm, owner_id o, buffer_id id, std::uint64_t size, unsigned char value) {
  auto c = mm.begin_cpu_access(o, id, cpu_access_mode::write);
  EXPECT_TRUE(c) << (c ? "" : c.err().describe());
  if (!c) return nullptr;
  std::memset(c->data, value, size);
  void* at = c->data;
  EXPECT_TRUE(mm.end_cpu_access(o, id));
  return at;
}

// Every byte an fd maps, as its receiver would see it.
std::vector<unsigned char> read_fd(int fd) {
  struct stat st {};
  EXPECT_EQ(::fstat(fd, &st), 0);
  const auto n = static_cast<std::size_t>(st.st_size);
  std::vector<unsigned char> out(n);
  void* p = ::mmap(nullptr, n, PROT_READ, MAP_SHARED, fd, 0);
  EXPECT_NE(p, MAP_FAILED);
  if (p == MAP_FAILED) return {};
  std::memcpy(out.data(), p, n);
  ::munmap(p, n);
  return out;
}

std::size_t count_of(const std::vector<unsigned char>& v, std::size_t from, std::size_t to, unsigned char value) {
  std::size_t n = 0;
  for (std::size_t i = from; i < to && i < v.size(); ++i) n += v[i] == value ? 1 : 0;
  return n;
}

// Alice's freed block goes to the pool; Bob's new buffer gets it (same
// mapping) and must read zeros through his export, not Alice's bytes.
TEST(HostPoolTenancyTest, APooledBlockShowsANewOwnerNoneOfThePreviousOwnersBytes) {
  sim_manager s;  // 16 MiB pageable: no chunks, every buffer a block of its own
  constexpr std::uint64_t size = 512 * KiB;
  auto a = s.mm->allocate(alice, request(size, {placement::pageable()}));
  ASSERT_TRUE(a) << a.err().describe();
  void* alice_at = write_all(*s.mm, alice, *a, size, 0xab);
  ASSERT_TRUE(s.mm->free(alice, *a));
  const auto clears = s.mm->stats().counters.clears;

  auto b = s.mm->allocate(bob, request(size, {placement::pageable()}));
  ASSERT_TRUE(b) << b.err().describe();
  auto c = s.mm->begin_cpu_access(bob, *b, cpu_access_mode::read);
  ASSERT_TRUE(c) << c.err().describe();
  EXPECT_EQ(c->data, alice_at) << "the pool did not hand Alice's block out again: nothing was tried";
  ASSERT_TRUE(s.mm->end_cpu_access(bob, *b));
  EXPECT_EQ(s.mm->stats().counters.clears, clears + 1) << "a reused block is cleared for its new owner";

  auto e = s.mm->export_fd(bob, *b);
  ASSERT_TRUE(e) << e.err().describe();
  const auto seen = read_fd(e->fd);
  ::close(e->fd);
  ASSERT_GE(seen.size(), size);
  EXPECT_EQ(count_of(seen, 0, seen.size(), 0xab), 0u) << "Bob's fd shows Alice's bytes";
  EXPECT_EQ(count_of(seen, 0, seen.size(), 0), seen.size());
}

// Bob's buffer is evicted into Alice's pooled block. The move writes Bob's
// bytes; the rest of the block (the padding up to the page his fd maps)
// must not keep Alice's.
TEST(HostPoolTenancyTest, AMoveIntoAPooledBlockLeavesNoneOfThePreviousOwnersBytesInItsPadding) {
  sim_manager s;
  auto a = s.mm->allocate(alice, request(64 * KiB, {placement::pageable()}));
  ASSERT_TRUE(a);
  void* alice_at = write_all(*s.mm, alice, *a, 64 * KiB, 0xab);
  ASSERT_TRUE(s.mm->free(alice, *a));

  constexpr std::uint64_t size = 64 * KiB - 100;  // 64 KiB of block, 100 bytes of padding
  auto b = s.mm->allocate(bob, request(size, {placement::vram(0), placement::pageable()}));
  ASSERT_TRUE(b);
  ASSERT_EQ(s.where(bob, *b).kind, memory_kind::device);
  (void)write_all(*s.mm, bob, *b, size, 0xcd);
  // A buffer that needs all of vram0 pushes Bob's out to pageable memory.
  auto big = s.mm->allocate(bob, request(1 * MiB, {placement::vram(0)}));
  ASSERT_TRUE(big) << big.err().describe();
  ASSERT_EQ(s.where(bob, *b).kind, memory_kind::host_pageable);

  auto c = s.mm->begin_cpu_access(bob, *b, cpu_access_mode::read);  // waits for the move
  ASSERT_TRUE(c) << c.err().describe();
  EXPECT_EQ(c->data, alice_at) << "the eviction did not land in Alice's pooled block: nothing was tried";
  ASSERT_TRUE(s.mm->end_cpu_access(bob, *b));
  auto e = s.mm->export_fd(bob, *b);
  ASSERT_TRUE(e) << e.err().describe();
  const auto seen = read_fd(e->fd);
  ::close(e->fd);
  ASSERT_EQ(seen.size(), 64 * KiB) << "the fd maps the whole block";
  EXPECT_EQ(count_of(seen, 0, size, 0xcd), size) << "the move lost Bob's bytes";
  EXPECT_EQ(count_of(seen, size, seen.size(), 0xab), 0u) << "Bob's fd shows Alice's bytes in the padding";
  EXPECT_EQ(count_of(seen, size, seen.size(), 0), 100u);
}

// VRAM ranges keep their pages too: a buffer promoted into a range Alice
// used must not show her bytes past its end, in the page its fd maps.
TEST(HostPoolTenancyTest, APromotionIntoAUsedVramRangeZeroesThePaddingItsFdShows) {
  sim_manager s;
  auto held = request(1 * MiB, {placement::vram(0)});  // all of vram0, held there
  held.no_evict = true;
  auto a = s.mm->allocate(alice, held);
  ASSERT_TRUE(a) << a.err().describe();
  (void)write_all(*s.mm, alice, *a, 1 * MiB, 0xab);
  constexpr std::uint64_t size = 64 * KiB - 100;
  auto b = s.mm->allocate(bob, request(size, {placement::vram(0), placement::pageable()}));
  ASSERT_TRUE(b);
  ASSERT_EQ(s.where(bob, *b).kind, memory_kind::host_pageable) << "Alice's buffer cannot be evicted";
  (void)write_all(*s.mm, bob, *b, size, 0xcd);
  ASSERT_TRUE(s.mm->free(alice, *a));

  const buffer_id ids[] = {*b};
  auto v = s.mm->validate(bob, ids);
  ASSERT_TRUE(v) << v.err().describe();
  ASSERT_EQ(v->promoted, 1u);
  auto e = s.mm->export_fd(bob, *b);  // waits for the move
  ASSERT_TRUE(e) << e.err().describe();
  const auto seen = read_fd(e->fd);
  ::close(e->fd);
  ASSERT_EQ(seen.size(), 64 * KiB) << "the fd maps the buffer's pages";
  EXPECT_EQ(count_of(seen, 0, size, 0xcd), size) << "the move lost Bob's bytes";
  EXPECT_EQ(count_of(seen, size, seen.size(), 0xab), 0u) << "Bob's fd shows Alice's bytes in the padding";
}

// A block whose fd left the daemon is closed when its buffer goes, never
// pooled: a receiver that keeps its mapping sees its own bytes, and the
// next buffer gets other memory.
TEST(HostPoolTenancyTest, AnExportedThenFreedBlockIsNeverReused) {
  sim_manager s;
  constexpr std::uint64_t size = 512 * KiB;
  auto a = s.mm->allocate(alice, request(size, {placement::pageable()}));
  ASSERT_TRUE(a);
  (void)write_all(*s.mm, alice, *a, size, 'A');
  auto e = s.mm->export_fd(alice, *a);
  ASSERT_TRUE(e) << e.err().describe();
  struct stat alice_st {};
  ASSERT_EQ(::fstat(e->fd, &alice_st), 0);
  auto* view = static_cast<unsigned char*>(::mmap(nullptr, size, PROT_READ, MAP_SHARED, e->fd, 0));
  ASSERT_NE(view, MAP_FAILED);
  ::close(e->fd);  // the receiver keeps only its mapping
  ASSERT_TRUE(s.mm->free(alice, *a));
  ASSERT_TRUE(s.mm->release_export(alice, *a));  // the buffer is gone now
  const auto clears = s.mm->stats().counters.clears;

  for (int i = 0; i < 4; ++i) {  // whatever the pool holds, none of it is that block
    auto b = s.mm->allocate(bob, request(size, {placement::pageable()}));
    ASSERT_TRUE(b) << b.err().describe();
    (void)write_all(*s.mm, bob, *b, size, 'B');
    auto be = s.mm->export_fd(bob, *b);  // which memory file it is
    ASSERT_TRUE(be) << be.err().describe();
    struct stat bob_st {};
    ASSERT_EQ(::fstat(be->fd, &bob_st), 0);
    ::close(be->fd);
    EXPECT_FALSE(bob_st.st_dev == alice_st.st_dev && bob_st.st_ino == alice_st.st_ino)
        << "Bob's buffer reuses the block Alice's receiver maps";
    ASSERT_TRUE(s.mm->free(bob, *b));
    ASSERT_TRUE(s.mm->release_export(bob, *b));
  }
  EXPECT_EQ(count_of(std::vector<unsigned char>(view, view + size), 0, size, 'A'), size)
      << "the receiver's mapping shows another buffer's bytes";
  EXPECT_EQ(s.mm->stats().counters.clears, clears) << "nothing was reused: Bob's blocks were exported too";
  ::munmap(view, size);
}

}  // namespace
}  // namespace xbuf
