// SPDX-License-Identifier: MIT
// The client's views of a GPU runtime's VRAM (mapping_allocator over
// backends/gpu/device_window), run in embedded mode over the fake GPU
// runtime of tests/backends, whose VMM allocations are memfds: a dynamic
// attachment's pointer into VRAM stays the same while the buffer is
// evicted to host memory and promoted back, and its bytes come along.
// On a real GPU the same path runs in scripts/device-check.sh.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <memory>

#include "backends/gpu/gpu_backend.hpp"
#include "client/embedded_allocator.hpp"
#include "tests/backends/fake_gpu_runtime.hpp"

namespace xbuf {
namespace {

using client::allocator;
constexpr std::uint64_t KiB = 1024;

class GpuViewsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto be = gpu::create_gpu_backend(test::make_fake_gpu_runtime(std::make_shared<test::fake_gpu_state>()), {});
    ASSERT_TRUE(be) << be.err().describe();
    manager_config mc;
    mc.vram_capacity = {256 * KiB, 256 * KiB};
    mc.pinned_capacity = 64 * 1024 * KiB;
    mc.pageable_capacity = 64 * 1024 * KiB;
    mc.promote_interval = std::chrono::milliseconds(0);
    auto a = client::open_embedded_over(std::move(*be), mc,
                                        test::make_fake_gpu_runtime(std::make_shared<test::fake_gpu_state>()));
    ASSERT_TRUE(a) << a.err().describe();
    a_ = std::move(*a);
  }
  buffer_id alloc(std::uint64_t size, std::vector<placement> where) {
    auto id = a_->alloc({.size = size, .placements = std::move(where), .name = "t", .cpu_access = false,
                         .no_evict = false, .alignment = 0});
    EXPECT_TRUE(id) << id.err().describe();
    return id ? *id : buffer_id{};
  }
  std::unique_ptr<allocator> a_;
};

bool all(const void* p, std::size_t n, char value) {
  const auto* c = static_cast<const char*>(p);
  for (std::size_t i = 0; i < n; ++i) {
    if (c[i] != value) return false;
  }
  return true;
}

TEST_F(GpuViewsTest, AVramPointerComesBackAfterEvictionAndPromotion) {
  const buffer_id b = alloc(64 * KiB, {placement::vram(0), placement::pinned()});
  auto at = a_->attach(b, 0, attach_mode::dynamic);
  ASSERT_TRUE(at) << at.err().describe();
  auto v = a_->begin_use(*at, fence_usage::write);
  ASSERT_TRUE(v) << v.err().describe();
  ASSERT_EQ(v->where, placement::vram(0));
  void* const in_vram = v->data;
  std::memset(in_vram, 'x', 64 * KiB);
  ASSERT_TRUE(a_->end_use(*at));

  // Evicted to pinned memory by a VRAM-only allocation: a host view, at
  // another address (the device window cannot show host memory).
  const buffer_id big = alloc(256 * KiB, {placement::vram(0)});
  auto h = a_->begin_use(*at, fence_usage::read);
  ASSERT_TRUE(h) << h.err().describe();
  EXPECT_EQ(h->where, placement::pinned());
  EXPECT_NE(h->data, in_vram);
  EXPECT_TRUE(all(h->data, 64 * KiB, 'x')) << "the move lost the bytes";
  ASSERT_TRUE(a_->end_use(*at));

  // Back to VRAM: the window shows the new allocation at the old address.
  ASSERT_TRUE(a_->free(big));
  const buffer_id ids[] = {b};
  auto promoted = a_->validate(ids);
  ASSERT_TRUE(promoted) << promoted.err().describe();
  EXPECT_EQ(promoted->promoted, 1u);
  auto back = a_->begin_use(*at, fence_usage::read);
  ASSERT_TRUE(back) << back.err().describe();
  EXPECT_EQ(back->where, placement::vram(0));
  EXPECT_EQ(back->data, in_vram) << "the framework's pointer must be the one it took first";
  EXPECT_TRUE(all(back->data, 64 * KiB, 'x'));
  ASSERT_TRUE(a_->end_use(*at));

  // Nothing stays held: the views released the exports they mapped.
  ASSERT_TRUE(a_->free(b));
  auto s = a_->stats();
  ASSERT_TRUE(s) << s.err().describe();
  for (const auto& d : s->domains) {
    EXPECT_EQ(d.exported_bytes, 0u) << d.name;
    EXPECT_EQ(d.used, 0u) << d.name;
  }
}

// A GPU runtime's VRAM is no memory file: exported, it is an allocation
// handle; the CPU reaches the buffer only after the manager moved it to
// host memory, which a CPU attachment's map does.
TEST_F(GpuViewsTest, ACpuAttachmentOfVramIsGivenHostMemory) {
  const buffer_id b = alloc(64 * KiB, {placement::vram(1)});
  auto e = a_->export_fd(b);
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_EQ(e->kind, memory_kind::device);
  ::close(e->fd);
  ASSERT_TRUE(a_->release_export(b));
  auto at = a_->attach(b, -1, attach_mode::dynamic);
  ASSERT_TRUE(at);
  auto v = a_->begin_use(*at, fence_usage::write);
  ASSERT_TRUE(v) << v.err().describe();
  EXPECT_EQ(v->where, placement::pinned());
  std::memset(v->data, 'y', 64 * KiB);  // a CPU address
  ASSERT_TRUE(a_->end_use(*at));
}

}  // namespace
}  // namespace xbuf
