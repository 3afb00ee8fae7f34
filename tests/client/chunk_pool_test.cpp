// SPDX-License-Identifier: MIT
//
// client/chunk_pool over the embedded allocator (the sim backend): small
// allocations come from chunks without a round trip each, blocks never
// overlap (also with threads racing), large sizes get buffers of their
// own, idle chunks go back, and every bad pointer is a named error.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <set>
#include <thread>
#include <vector>

#include "client/allocator.hpp"
#include "client/chunk_pool.hpp"

namespace xbuf::client {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

class ChunkPoolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    embedded_options o;
    o.backend = "sim";
    o.sim_devices = 1;
    o.sim_vram = 16 * MiB;
    o.pinned = 16 * MiB;
    o.pageable = 64 * MiB;
    auto a = open_embedded(o);
    ASSERT_TRUE(a) << a.err().describe();
    a_ = std::move(*a);
  }
  chunk_pool_options options() const {
    chunk_pool_options o;
    o.placements = {placement::vram(0), placement::pinned()};
    o.device = 0;
    o.chunk_size = 1 * MiB;
    o.keep_idle = 0;
    o.idle_time = 0ms;
    return o;
  }
  std::size_t buffers() {
    auto s = a_->stats();
    EXPECT_TRUE(s);
    return s ? s->buffers.size() : 0;
  }
  std::unique_ptr<allocator> a_;
};

TEST_F(ChunkPoolTest, SmallAllocationsShareOneChunk) {
  chunk_pool pool(*a_, options());
  std::vector<void*> ps;
  for (int i = 0; i < 1000; ++i) {
    auto p = pool.allocate(1000);  // a 1 KiB block each: 1,000 fit one 1 MiB chunk
    ASSERT_TRUE(p) << p.err().describe();
    ps.push_back(*p);
  }
  EXPECT_EQ(pool.stats().chunk_allocs, 1u);
  EXPECT_EQ(buffers(), 1u);
  EXPECT_EQ(pool.stats().bytes_in_use, 1000 * KiB);
  std::set<void*> distinct(ps.begin(), ps.end());
  EXPECT_EQ(distinct.size(), ps.size());
  for (void* p : ps) EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % KiB, 0u) << "aligned to its class";
  for (void* p : ps) ASSERT_TRUE(pool.deallocate(p));
  EXPECT_EQ(pool.stats().bytes_in_use, 0u);
  EXPECT_EQ(pool.stats().idle_chunks, 1u);
}

TEST_F(ChunkPoolTest, BlocksAreWritableAndDoNotOverlap) {
  chunk_pool pool(*a_, options());
  std::vector<std::pair<std::uint8_t*, std::uint64_t>> blocks;
  for (std::uint64_t size : {1u, 255u, 256u, 257u, 4000u, 65536u, 200000u}) {
    for (int i = 0; i < 3; ++i) {
      auto p = pool.allocate(size);
      ASSERT_TRUE(p) << p.err().describe();
      blocks.emplace_back(static_cast<std::uint8_t*>(*p), size);
    }
  }
  for (std::size_t k = 0; k < blocks.size(); ++k) std::memset(blocks[k].first, static_cast<int>(k + 1), blocks[k].second);
  for (std::size_t k = 0; k < blocks.size(); ++k) {
    for (std::uint64_t j = 0; j < blocks[k].second; ++j) {
      ASSERT_EQ(blocks[k].first[j], static_cast<std::uint8_t>(k + 1)) << "block " << k << " byte " << j;
    }
  }
}

TEST_F(ChunkPoolTest, LargeSizesGetABufferOfTheirOwn) {
  chunk_pool pool(*a_, options());
  auto p = pool.allocate(3 * MiB);
  ASSERT_TRUE(p) << p.err().describe();
  EXPECT_EQ(pool.stats().large_buffers, 1u);
  EXPECT_EQ(buffers(), 1u);
  std::memset(*p, 0x5a, 3 * MiB);
  EXPECT_EQ(pool.deallocate(static_cast<char*>(*p) + 4096).code(), errc::not_found);
  ASSERT_TRUE(pool.deallocate(*p));
  EXPECT_EQ(buffers(), 0u);
  EXPECT_EQ(pool.stats().large_buffers, 0u);
}

TEST_F(ChunkPoolTest, IdleChunksGoBack) {
  auto o = options();
  o.keep_idle = 1;
  o.idle_time = 0ms;
  chunk_pool pool(*a_, o);
  auto small = pool.allocate(512);
  auto mid = pool.allocate(8 * KiB);
  ASSERT_TRUE(small && mid);
  EXPECT_EQ(pool.stats().chunks, 2u);
  ASSERT_TRUE(pool.deallocate(*small));
  ASSERT_TRUE(pool.deallocate(*mid));
  EXPECT_EQ(pool.stats().idle_chunks, 2u);
  EXPECT_EQ(pool.trim(), 1u) << "one idle chunk is kept";
  EXPECT_EQ(pool.stats().chunks, 1u);
  EXPECT_EQ(pool.release_idle(), 1u);
  EXPECT_EQ(pool.stats().chunks, 0u);
  EXPECT_EQ(buffers(), 0u);
  // And the pool still works after giving everything back.
  auto again = pool.allocate(512);
  ASSERT_TRUE(again) << again.err().describe();
  EXPECT_TRUE(pool.deallocate(*again));
}

TEST_F(ChunkPoolTest, BadPointersAreNamedErrors) {
  chunk_pool pool(*a_, options());
  EXPECT_EQ(pool.allocate(0).code(), errc::invalid_argument);
  int local = 0;
  auto foreign = pool.deallocate(&local);
  EXPECT_EQ(foreign.code(), errc::not_found);
  EXPECT_NE(foreign.err().message.find("not from this pool"), std::string::npos) << foreign.err().message;
  auto p = pool.allocate(100);
  ASSERT_TRUE(p);
  EXPECT_EQ(pool.deallocate(static_cast<char*>(*p) + 1).code(), errc::not_found);
  ASSERT_TRUE(pool.deallocate(*p));
  auto twice = pool.deallocate(*p);
  EXPECT_EQ(twice.code(), errc::bad_state);
  EXPECT_NE(twice.err().message.find("already free"), std::string::npos) << twice.err().message;
}

TEST_F(ChunkPoolTest, TheAllocatorsErrorsComeThrough) {
  auto o = options();
  o.placements = {placement::vram(0)};
  chunk_pool pool(*a_, o);
  auto huge = pool.allocate(64 * MiB);
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.code(), errc::invalid_argument) << huge.err().describe();
  // Chunks and large buffers are no_evict, held against the pinned limit
  // (16 MiB here): 10 MiB held, 10 MiB more is past it.
  auto first = pool.allocate(10 * MiB);
  ASSERT_TRUE(first) << first.err().describe();
  auto second = pool.allocate(10 * MiB);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.code(), errc::quota_exceeded) << second.err().describe();
  EXPECT_NE(second.err().message.find("pinned limit"), std::string::npos) << second.err().message;
  EXPECT_EQ(pool.stats().large_buffers, 1u);
  EXPECT_TRUE(pool.deallocate(*first));
}

// Threads racing on one pool: every block handed out is one no other
// thread holds (each writes its tag and finds it intact before freeing).
TEST_F(ChunkPoolTest, RacingThreadsNeverShareABlock) {
  chunk_pool pool(*a_, options());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::vector<std::pair<std::uint32_t*, std::uint64_t>> held;
      for (int i = 0; i < 2000; ++i) {
        const std::uint64_t size = 64u << ((i + t) % 6);
        auto p = pool.allocate(size);
        if (!p) { failures.fetch_add(1); continue; }
        auto* w = static_cast<std::uint32_t*>(*p);
        const auto tag = static_cast<std::uint32_t>(t << 24 | i);
        for (std::uint64_t j = 0; j < size / 4; ++j) w[j] = tag;
        held.emplace_back(w, size);
        if (held.size() > 16 || i % 3 == 0) {
          auto [q, n] = held.front();
          held.erase(held.begin());
          const std::uint32_t want = q[0];
          for (std::uint64_t j = 0; j < n / 4; ++j) {
            if (q[j] != want) { failures.fetch_add(1); break; }
          }
          if (!pool.deallocate(q)) failures.fetch_add(1);
        }
      }
      for (auto [q, n] : held) {
        if (!pool.deallocate(q)) failures.fetch_add(1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(pool.stats().bytes_in_use, 0u);
}

}  // namespace
}  // namespace xbuf::client
