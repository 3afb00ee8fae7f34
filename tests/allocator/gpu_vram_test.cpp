// SPDX-License-Identifier: MIT
// The memory manager over the GPU skeleton (backends/gpu/) with the fake
// runtime of tests/backends (VMM allocations are real memfds, so exported
// fds really cross mappings): where device memory exports per allocation
// but no arena part can get an fd of its own - CUDA's cuMemCreate with a
// POSIX-fd handle - each VRAM buffer is an allocation of its own (DESIGN.md,
// "An fd reaches one buffer"), cleared on the device before its owner
// sees it. The same paths on a real GPU run in scripts/device-check.sh.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "allocator/host_heap.hpp"
#include "allocator/memory_manager.hpp"
#include "backends/gpu/gpu_backend.hpp"
#include "tests/backends/fake_gpu_runtime.hpp"

namespace xbuf {
namespace {

constexpr std::uint64_t KiB = 1024;

class GpuVramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto be = gpu::create_gpu_backend(test::make_fake_gpu_runtime(state_), {});
    ASSERT_TRUE(be) << be.err().describe();
    backend_ = std::move(*be);
    ASSERT_TRUE(backend_->caps().export_fd);
    ASSERT_FALSE(backend_->caps().export_detaches_ranges);
    manager_config cfg;
    cfg.device_backend = backend_.get();
    cfg.vram_capacity = {256 * KiB, 256 * KiB};
    cfg.pinned_capacity = 64 * 1024 * KiB;  // room for chunks (host_heap.hpp)
    cfg.pageable_capacity = 64 * 1024 * KiB;
    auto m = memory_manager::create(std::move(cfg));
    ASSERT_TRUE(m) << m.err().describe();
    mm_ = std::move(*m);
  }
  buffer_id vram_buffer(std::uint64_t size) {
    alloc_request req;
    req.size = size;
    req.placements = {placement::vram(0)};
    auto id = mm_->allocate(owner_, req);
    EXPECT_TRUE(id) << id.err().describe();
    return id ? *id : buffer_id{};
  }

  std::shared_ptr<test::fake_gpu_state> state_ = std::make_shared<test::fake_gpu_state>();
  std::unique_ptr<backend> backend_;
  std::unique_ptr<memory_manager> mm_;
  const owner_id owner_ = 1;
};

// Before: the VRAM heap was one arena allocation and export said
// "unsupported" (its fd would have reached every buffer in the arena).
TEST_F(GpuVramTest, EachVramBufferExportsAnAllocationOfItsOwn) {
  const auto a = vram_buffer(4 * KiB);
  const auto b = vram_buffer(4 * KiB);
  auto ea = mm_->export_fd(owner_, a, std::chrono::seconds(5));
  auto eb = mm_->export_fd(owner_, b, std::chrono::seconds(5));
  ASSERT_TRUE(ea) << ea.err().describe();
  ASSERT_TRUE(eb) << eb.err().describe();
  struct stat sa {}, sb {};
  ASSERT_EQ(::fstat(ea->fd, &sa), 0);
  ASSERT_EQ(::fstat(eb->fd, &sb), 0);
  EXPECT_EQ(sa.st_size, 4 * 1024) << "the fd is one buffer's allocation, not the device's VRAM";
  EXPECT_NE(sa.st_ino, sb.st_ino) << "two buffers, two allocations";
  auto* va = static_cast<char*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, ea->fd, 0));
  auto* vb = static_cast<char*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, eb->fd, 0));
  ASSERT_NE(va, MAP_FAILED);
  ASSERT_NE(vb, MAP_FAILED);
  EXPECT_EQ(va[0], 0) << "a new buffer starts zeroed";
  std::memset(va, 'A', 4096);
  std::memset(vb, 'B', 4096);
  EXPECT_EQ(va[4095], 'A') << "writing one buffer never reaches the other";
  ::munmap(va, 4096);
  ::munmap(vb, 4096);
  ::close(ea->fd);
  ::close(eb->fd);
}

TEST_F(GpuVramTest, VramBuffersAreClearedOnTheDeviceAndCountedInTheirDomain) {
  const int fills_before = state_->fills.load();
  (void)vram_buffer(5 * KiB);
  EXPECT_GT(state_->fills.load(), fills_before) << "the device's engine cleared the new allocation";
  const auto s = mm_->stats();
  ASSERT_FALSE(s.domains.empty());
  EXPECT_EQ(s.domains[0].name, "vram0");
  EXPECT_EQ(s.domains[0].used, 8 * KiB) << "5 KiB rounded to the fake's 4 KiB granule";
  EXPECT_EQ(s.counters.clears, 1u);
}

TEST_F(GpuVramTest, AFullVramDomainSaysSo) {
  alloc_request held;
  held.size = 256 * KiB;
  held.placements = {placement::vram(0)};
  held.no_evict = true;  // else the manager evicts it to make room
  ASSERT_TRUE(mm_->allocate(owner_, held));
  alloc_request req;
  req.size = 4 * KiB;
  req.placements = {placement::vram(0)};
  req.timeout = std::chrono::milliseconds(10);
  auto id = mm_->allocate(owner_, req);
  ASSERT_FALSE(id);
  EXPECT_EQ(id.code(), errc::out_of_memory);
  EXPECT_NE(id.err().message.find("vram0"), std::string::npos) << id.err().message;
}

// Host memory on a GPU runtime: pageable buffers share chunks (no fd each;
// an export detaches its range), pinned ones - registered with the runtime
// as a whole block - stay a block each.
TEST_F(GpuVramTest, PageableBuffersShareChunksAndPinnedOnesDoNot) {
  EXPECT_EQ(host_heap::create(*backend_, false, 256 * 1024 * KiB)->small_max(), 1024 * KiB);
  EXPECT_EQ(host_heap::create(*backend_, true, 256 * 1024 * KiB)->small_max(), 0u) << "pinned: no chunks";
  alloc_request req;
  req.size = 4 * KiB;
  req.placements = {placement::pageable()};
  auto a = mm_->allocate(owner_, req);
  auto b = mm_->allocate(owner_, req);
  ASSERT_TRUE(a && b);
  auto e = mm_->export_fd(owner_, *a, std::chrono::seconds(5));
  ASSERT_TRUE(e) << e.err().describe();
  struct stat st {};
  ASSERT_EQ(::fstat(e->fd, &st), 0);
  EXPECT_EQ(st.st_size, 4 * 1024) << "the export is a's page, not the 16 MiB chunk";
  ::close(e->fd);
  req.placements = {placement::pinned()};
  auto p = mm_->allocate(owner_, req);
  ASSERT_TRUE(p);
  auto ep = mm_->export_fd(owner_, *p, std::chrono::seconds(5));
  ASSERT_TRUE(ep) << ep.err().describe();
  ASSERT_EQ(::fstat(ep->fd, &st), 0);
  EXPECT_EQ(st.st_size, 4 * 1024) << "a pinned buffer is a block of its own";
  ::close(ep->fd);
}

// A GPU runtime fills device memory only: host memory freed here is not
// kept for reuse with needs_clear (the clear would be refused) - freed chunk
// ranges are punched and pinned blocks dropped - so allocating again works
// and reads zeros, never the previous buffer's bytes.
TEST_F(GpuVramTest, ReusedHostMemoryNeedsNoFillTheRuntimeCannotDo) {
  for (auto where : {placement::pageable(), placement::pinned()}) {
    for (std::uint64_t size : {64 * KiB, 2048 * KiB}) {
      alloc_request req;
      req.size = size;
      req.cpu_access = true;
      req.placements = {where};
      for (int round = 0; round < 3; ++round) {
        auto id = mm_->allocate(owner_, req);
        ASSERT_TRUE(id) << to_string(where) << " " << size << " round " << round << ": " << id.err().describe();
        auto c = mm_->begin_cpu_access(owner_, *id, cpu_access_mode::write);
        ASSERT_TRUE(c) << c.err().describe();
        const auto* p = static_cast<const unsigned char*>(c->data);
        EXPECT_EQ(std::count(p, p + size, 0), static_cast<std::ptrdiff_t>(size))
            << to_string(where) << " " << size << " round " << round << ": the previous buffer's bytes";
        std::memset(c->data, 0x6b, size);
        ASSERT_TRUE(mm_->end_cpu_access(owner_, *id));
        ASSERT_TRUE(mm_->free(owner_, *id));
      }
    }
  }
}

}  // namespace
}  // namespace xbuf
