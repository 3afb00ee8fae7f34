// SPDX-License-Identifier: MIT
//
// conformance_test.cpp - one suite, every backend (backend_factories.cpp).
// A backend whose factory reports no_device is skipped with its reason; cases
// that need devices skip on backends without them (host).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "core/fence.hpp"
#include "tests/backends/backend_factories.hpp"
#include "tests/backends/backend_test_util.hpp"
#include "tests/common/bin_dir.hpp"

extern char** environ;

namespace xbuf {
namespace {

using namespace std::chrono_literals;

// A guard against hangs only: a correct backend signals long before.
constexpr auto hang_guard = 60s;

memory_span whole(const memory_block_ptr& b) { return {b, 0, b->size}; }

class backend_conformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto made = test::create_test_backend(GetParam());
    if (!made && made.code() == errc::no_device) {
      GTEST_SKIP() << GetParam() << " backend unavailable: " << made.err().describe();
    }
    ASSERT_TRUE(made) << made.err().describe();
    b_ = std::move(made).value();
  }

  std::size_t device_count() const { return b_->devices().size(); }

  memory_block_ptr host_block(std::size_t bytes, bool pinned = false) {
    auto r = b_->allocate_host(bytes, pinned);
    EXPECT_TRUE(r) << r.err().describe();
    return r ? *r : nullptr;
  }
  memory_block_ptr device_block(int device, std::size_t bytes) {
    auto r = b_->allocate_device(device, bytes);
    EXPECT_TRUE(r) << r.err().describe();
    return r ? *r : nullptr;
  }

  // Runs a copy and waits for it; returns the fence's error.
  int copy_and_wait(const memory_span& dst, const memory_span& src,
                    std::span<const fence_ptr> wait_for = {}) {
    auto f = b_->copy(dst, src, wait_for);
    EXPECT_TRUE(f) << f.err().describe();
    if (!f) return -EINVAL;
    EXPECT_TRUE((*f)->wait(hang_guard)) << "copy fence did not signal";
    return (*f)->error();
  }

  // Reads a block (any kind) through a copy into host memory.
  std::uint64_t checksum_of(const memory_span& s) {
    auto staging = host_block(s.size);
    if (!staging) return 0;
    EXPECT_EQ(copy_and_wait({staging, 0, s.size}, s), 0);
    return test::checksum(staging->host_ptr, s.size);
  }

  // Writes fill_random(seed) into a span (any kind); returns its checksum.
  std::uint64_t write_random(const memory_span& s, std::uint64_t seed) {
    auto staging = host_block(s.size);
    if (!staging) return 0;
    test::fill_random(staging->host_ptr, s.size, seed);
    EXPECT_EQ(copy_and_wait(s, {staging, 0, s.size}), 0);
    return test::checksum(staging->host_ptr, s.size);
  }

  std::unique_ptr<backend> b_;
};

#define REQUIRE_DEVICES(n)                                                              \
  if (device_count() < (n))                                                             \
  GTEST_SKIP() << GetParam() << " has " << device_count() << " devices, this case needs " << (n)

// ---------- devices and allocation ----------

TEST_P(backend_conformance, DevicesReportNameVendorAndMemory) {
  for (const auto& d : b_->devices()) {
    EXPECT_FALSE(d.name.empty());
    EXPECT_FALSE(d.vendor.empty()) << d.name;
    EXPECT_GT(d.memory_bytes, 0u) << d.name;
  }
  EXPECT_FALSE(b_->name().empty());
}

TEST_P(backend_conformance, AllocateDeviceGivesBlockOfAtLeastRequestedSizeOnThatDevice) {
  REQUIRE_DEVICES(1);
  for (int dev = 0; dev < static_cast<int>(device_count()); ++dev) {
    auto blk = device_block(dev, 10000);
    ASSERT_TRUE(blk);
    EXPECT_EQ(blk->kind, memory_kind::device);
    EXPECT_EQ(blk->device, dev);
    EXPECT_GE(blk->size, 10000u);
    EXPECT_EQ(blk->size % b_->caps().device_granularity, 0u);
    EXPECT_NE(blk->device_ptr, 0u);
    if (b_->caps().host_mapped_device) {
      EXPECT_NE(blk->host_ptr, nullptr);
    }
  }
}

TEST_P(backend_conformance, FreedDeviceMemoryCanBeAllocatedAgain) {
  REQUIRE_DEVICES(1);
  // Half the device twice in a row only fits if the first half went back.
  const std::size_t half = std::min<std::size_t>(b_->devices()[0].memory_bytes / 2, std::size_t{256} << 20);
  for (int round = 0; round < 3; ++round) {
    auto blk = b_->allocate_device(0, half);
    ASSERT_TRUE(blk) << "round " << round << ": " << blk.err().describe();
  }
}

TEST_P(backend_conformance, AllocateDeviceZeroBytesIsInvalidArgument) {
  REQUIRE_DEVICES(1);
  auto r = b_->allocate_device(0, 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("0 bytes"), std::string::npos) << r.err().message;
}

TEST_P(backend_conformance, AllocateDeviceOnMissingDeviceIsNoDeviceNamingIndex) {
  for (int dev : {-1, static_cast<int>(device_count()), 1000}) {
    auto r = b_->allocate_device(dev, 4096);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.code(), errc::no_device);
    EXPECT_NE(r.err().message.find("device " + std::to_string(dev)), std::string::npos) << r.err().message;
  }
}

TEST_P(backend_conformance, AllocateDeviceBeyondCapacityIsOutOfMemoryNamingDevice) {
  REQUIRE_DEVICES(1);
  const auto& d = b_->devices()[0];
  auto r = b_->allocate_device(0, static_cast<std::size_t>(d.memory_bytes) * 4);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::out_of_memory);
  EXPECT_NE(r.err().message.find(d.name), std::string::npos) << r.err().message;
}

TEST_P(backend_conformance, AllocateHostPageableAndPinnedGiveHostReachableBlocks) {
  for (bool pinned : {false, true}) {
    auto r = b_->allocate_host(12345, pinned);
    if (pinned && !b_->caps().pinned_host) {
      ASSERT_FALSE(r);
      EXPECT_EQ(r.code(), errc::unsupported);
      continue;
    }
    ASSERT_TRUE(r) << r.err().describe();
    const auto& blk = *r;
    EXPECT_EQ(blk->kind, pinned ? memory_kind::host_pinned : memory_kind::host_pageable);
    EXPECT_EQ(blk->device, -1);
    EXPECT_GE(blk->size, 12345u);
    ASSERT_NE(blk->host_ptr, nullptr);
    // The CPU can write and read all of it.
    test::fill_random(blk->host_ptr, 12345, 7);
    std::vector<unsigned char> expect(12345);
    test::fill_random(expect.data(), expect.size(), 7);
    EXPECT_EQ(std::memcmp(blk->host_ptr, expect.data(), expect.size()), 0);
  }
}

TEST_P(backend_conformance, AllocateHostZeroBytesIsInvalidArgument) {
  auto r = b_->allocate_host(0, false);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("0 bytes"), std::string::npos) << r.err().message;
}

TEST_P(backend_conformance, AllocateHostOnUnknownNumaNodeIsInvalidArgumentNamingNode) {
  for (int node : {-2, 4096}) {
    auto r = b_->allocate_host(4096, false, node);
    ASSERT_FALSE(r) << "node " << node;
    EXPECT_EQ(r.code(), errc::invalid_argument);
    EXPECT_NE(r.err().message.find("NUMA node " + std::to_string(node)), std::string::npos) << r.err().message;
  }
}

// ---------- copy argument checks ----------

// ---------- fill (clearing memory for a new owner) ----------

TEST_P(backend_conformance, FillSetsEveryByteOfTheRangeAfterItsFences) {
  REQUIRE_DEVICES(1);
  if (!b_->caps().fill) GTEST_SKIP() << GetParam() << " does not fill";
  const std::size_t n = 64 * 1024;
  auto blk = device_block(0, n);
  ASSERT_TRUE(blk);
  (void)write_random(whole(blk), 7);
  auto gate = fence::create(fence::allocate_context(), 1);
  // [4 KiB, 60 KiB) only: the fill must neither spill nor start early.
  auto f = b_->fill({blk, 4096, n - 8192}, 0, std::span<const fence_ptr>(&gate, 1));
  ASSERT_TRUE(f) << f.err().describe();
  EXPECT_FALSE((*f)->wait(20ms)) << "a fill waits for its fences like a copy";
  ASSERT_TRUE(gate->signal());
  ASSERT_TRUE((*f)->wait(hang_guard));
  EXPECT_EQ((*f)->error(), 0);
  auto staging = host_block(n);
  ASSERT_TRUE(staging);
  ASSERT_EQ(copy_and_wait({staging, 0, n}, whole(blk)), 0);
  const auto* p = static_cast<const unsigned char*>(staging->host_ptr);
  std::size_t zeros_inside = 0, zeros_outside = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const bool inside = i >= 4096 && i < n - 4096;
    if (p[i] == 0) ++(inside ? zeros_inside : zeros_outside);
  }
  EXPECT_EQ(zeros_inside, n - 8192);
  EXPECT_LT(zeros_outside, 64u) << "bytes outside the range were cleared";
}

TEST_P(backend_conformance, FillWithBadRangeOrNullFenceIsInvalidArgument) {
  REQUIRE_DEVICES(1);
  auto blk = device_block(0, 8192);
  ASSERT_TRUE(blk);
  auto r = b_->fill({blk, 8000, 400}, 0);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("dst range"), std::string::npos) << r.err().message;
  const fence_ptr deps[] = {nullptr};
  auto r2 = b_->fill({blk, 0, 16}, 0, deps);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.code(), errc::invalid_argument);
  EXPECT_NE(r2.err().message.find("wait_for[0]"), std::string::npos) << r2.err().message;
}

TEST_P(backend_conformance, CopyWithSizeMismatchIsInvalidArgument) {
  auto a = host_block(8192);
  auto c = host_block(8192);
  auto r = b_->copy({a, 0, 4096}, {c, 0, 2048});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("size mismatch"), std::string::npos) << r.err().message;
}

TEST_P(backend_conformance, CopyRangeOutsideBlockIsInvalidArgumentNamingOperand) {
  auto a = host_block(8192);
  auto c = host_block(8192);
  const std::size_t huge = ~std::size_t{0};
  struct bad_case {
    memory_span dst, src;
    const char* role;
  } cases[] = {
      {{a, 8000, 400}, {c, 0, 400}, "dst"},
      {{a, 0, 400}, {c, 8190, 400}, "src"},
      {{a, 0, 400}, {c, huge, 400}, "src"},       // offset + size overflows
      {{a, 1, huge}, {c, 1, huge}, "dst"},
  };
  for (const auto& bc : cases) {
    auto r = b_->copy(bc.dst, bc.src);
    ASSERT_FALSE(r) << bc.role;
    EXPECT_EQ(r.code(), errc::invalid_argument);
    EXPECT_NE(r.err().message.find(std::string(bc.role) + " range"), std::string::npos) << r.err().message;
  }
}

TEST_P(backend_conformance, CopyWithNullBlockOrNullFenceIsInvalidArgument) {
  auto a = host_block(4096);
  auto r = b_->copy({nullptr, 0, 16}, {a, 0, 16});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("dst block is null"), std::string::npos) << r.err().message;

  auto c = host_block(4096);
  const fence_ptr deps[] = {fence::signaled(), nullptr};
  auto r2 = b_->copy({a, 0, 16}, {c, 0, 16}, deps);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.code(), errc::invalid_argument);
  EXPECT_NE(r2.err().message.find("wait_for[1]"), std::string::npos) << r2.err().message;
}

TEST_P(backend_conformance, CopyBetweenOverlappingRangesOfOneBlockIsInvalidArgument) {
  auto a = host_block(8192);
  auto r = b_->copy({a, 100, 1000}, {a, 600, 1000});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("overlap"), std::string::npos) << r.err().message;
}

TEST_P(backend_conformance, CopyOfAnotherInstancesBlockIsUnsupported) {
  auto other = test::create_test_backend(GetParam());
  ASSERT_TRUE(other) << other.err().describe();
  auto foreign = (*other)->allocate_host(4096, false);
  ASSERT_TRUE(foreign);
  auto mine = host_block(4096);
  auto r = b_->copy(whole(mine), whole(*foreign));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::unsupported);
  EXPECT_NE(r.err().message.find("src"), std::string::npos) << r.err().message;
}

// ---------- copies ----------

TEST_P(backend_conformance, CopiesInEveryDirectionPreserveRandomData) {
  constexpr std::size_t n = (std::size_t{3} << 20) + 123;  // not a multiple of anything
  auto src = host_block(n);
  auto h2 = host_block(n, b_->caps().pinned_host);
  ASSERT_TRUE(src && h2);
  test::fill_random(src->host_ptr, n, 42);
  const auto want = test::checksum(src->host_ptr, n);

  // H -> H
  ASSERT_EQ(copy_and_wait({h2, 0, n}, {src, 0, n}), 0);
  EXPECT_EQ(test::checksum(h2->host_ptr, n), want) << "host to host";
  if (device_count() == 0) return;

  // H -> D0 -> D(last) -> D0 at an offset -> H
  const int last = static_cast<int>(device_count()) - 1;
  auto d0 = device_block(0, n + 8192);
  auto d1 = device_block(last, n);
  ASSERT_TRUE(d0 && d1);
  ASSERT_EQ(copy_and_wait({d0, 0, n}, {src, 0, n}), 0);
  ASSERT_EQ(copy_and_wait({d1, 0, n}, {d0, 0, n}), 0);
  ASSERT_EQ(copy_and_wait({d0, 4096, n}, {d1, 0, n}), 0);
  auto back = host_block(n);
  ASSERT_EQ(copy_and_wait({back, 0, n}, {d0, 4096, n}), 0);
  EXPECT_EQ(test::checksum(back->host_ptr, n), want) << "host -> device -> device -> device -> host";
}

TEST_P(backend_conformance, CopyWaitsForItsWaitForFences) {
  constexpr std::size_t n = 1 << 16;
  auto src = host_block(n);
  auto dst = host_block(n);
  ASSERT_TRUE(src && dst);
  test::fill_random(src->host_ptr, n, 1);
  std::memset(dst->host_ptr, 0xAB, n);
  std::vector<unsigned char> untouched(n, 0xAB);

  auto gate_a = fence::create(fence::allocate_context(), 1);
  auto gate_b = fence::create(fence::allocate_context(), 1);
  const fence_ptr deps[] = {gate_a, gate_b};
  // Through a device when there is one: the device engine must wait too.
  memory_block_ptr mid = device_count() > 0 ? device_block(0, n) : host_block(n);
  auto f1 = b_->copy({mid, 0, n}, {src, 0, n}, deps);
  ASSERT_TRUE(f1) << f1.err().describe();
  auto f2 = b_->copy({dst, 0, n}, {mid, 0, n}, std::span<const fence_ptr>(&*f1, 1));
  ASSERT_TRUE(f2) << f2.err().describe();

  // Not started while a fence is pending: a bounded wait must time out.
  EXPECT_EQ((*f2)->wait(50ms).code(), errc::timed_out);
  ASSERT_TRUE(gate_a->signal());
  EXPECT_EQ((*f2)->wait(50ms).code(), errc::timed_out);
  EXPECT_FALSE((*f1)->is_signaled());
  EXPECT_EQ(std::memcmp(dst->host_ptr, untouched.data(), n), 0) << "copy ran before its fences signaled";

  ASSERT_TRUE(gate_b->signal());
  ASSERT_TRUE((*f2)->wait(hang_guard));
  EXPECT_EQ((*f1)->error(), 0);
  EXPECT_EQ((*f2)->error(), 0);
  EXPECT_EQ(test::checksum(dst->host_ptr, n), test::checksum(src->host_ptr, n));
}

TEST_P(backend_conformance, WaitForFenceErrorSkipsCopyAndPropagatesToItsFence) {
  constexpr std::size_t n = 1 << 16;
  auto src = host_block(n);
  auto dst = host_block(n);
  ASSERT_TRUE(src && dst);
  test::fill_random(src->host_ptr, n, 2);
  std::memset(dst->host_ptr, 0x5A, n);
  const auto before = test::checksum(dst->host_ptr, n);

  // Already failed, and failing later.
  const fence_ptr failed[] = {fence::signaled(-ETIMEDOUT)};
  auto f = b_->copy(whole(dst), whole(src), failed);
  ASSERT_TRUE(f) << f.err().describe();
  ASSERT_TRUE((*f)->wait(hang_guard));
  EXPECT_EQ((*f)->error(), -ETIMEDOUT);

  auto late = fence::create(fence::allocate_context(), 1);
  const fence_ptr deps[] = {fence::signaled(), late};
  memory_block_ptr target = device_count() > 0 ? device_block(0, n) : dst;
  auto g = b_->copy({target, 0, n}, whole(src), deps);
  ASSERT_TRUE(g) << g.err().describe();
  ASSERT_TRUE(late->signal(-EIO));
  ASSERT_TRUE((*g)->wait(hang_guard));
  EXPECT_EQ((*g)->error(), -EIO);
  EXPECT_EQ(test::checksum(dst->host_ptr, n), before) << "a copy with a failed fence wrote its destination";
}

TEST_P(backend_conformance, CopyFenceSignalsOnceAndRunsCallbacks) {
  auto src = host_block(4096);
  auto dst = device_count() > 0 ? device_block(0, 4096) : host_block(4096);
  ASSERT_TRUE(src && dst);
  auto gate = fence::create(fence::allocate_context(), 1);
  const fence_ptr deps[] = {gate};
  auto f = b_->copy({dst, 0, 4096}, {src, 0, 4096}, deps);
  ASSERT_TRUE(f);
  std::atomic<int> calls{0};
  auto id = (*f)->add_callback([&](const fence&) { ++calls; });
  ASSERT_TRUE(id) << id.err().describe();
  EXPECT_FALSE((*f)->driver_name().empty());
  ASSERT_TRUE(gate->signal());
  ASSERT_TRUE((*f)->wait(hang_guard));
  EXPECT_EQ(calls.load(), 1);
  EXPECT_TRUE((*f)->timestamp().has_value());
  EXPECT_EQ((*f)->add_callback([](const fence&) {}).code(), errc::already_signaled);
}

TEST_P(backend_conformance, CopyFencesOfOneEngineSignalInSubmissionOrder) {
  constexpr int copies = 16;
  auto src = host_block(1 << 16);
  auto dst = device_count() > 0 ? device_block(0, std::size_t{1} << 20) : host_block(std::size_t{1} << 20);
  ASSERT_TRUE(src && dst);
  auto gate = fence::create(fence::allocate_context(), 1);
  const fence_ptr deps[] = {gate};
  std::mutex m;
  std::vector<int> order;
  std::vector<fence_ptr> fences;
  for (int i = 0; i < copies; ++i) {
    // Only the first waits for the gate; the rest queue behind it.
    auto f = b_->copy({dst, static_cast<std::size_t>(i) << 16, 1 << 16}, {src, 0, 1 << 16},
                      i == 0 ? std::span<const fence_ptr>(deps) : std::span<const fence_ptr>());
    ASSERT_TRUE(f);
    ASSERT_TRUE((*f)->add_callback([&, i](const fence&) {
      std::lock_guard lock(m);
      order.push_back(i);
    }));
    fences.push_back(*f);
  }
  for (int i = 1; i < copies; ++i) {
    EXPECT_EQ(fences[i]->context(), fences[0]->context());
    EXPECT_GT(fences[i]->seqno(), fences[i - 1]->seqno());
  }
  ASSERT_TRUE(gate->signal());
  ASSERT_TRUE(wait_all(fences, hang_guard));
  std::lock_guard lock(m);
  ASSERT_EQ(order.size(), static_cast<std::size_t>(copies));
  for (int i = 0; i < copies; ++i) EXPECT_EQ(order[i], i);
}

// ---------- export / import ----------

TEST_P(backend_conformance, ExportRangeOutsideBlockIsInvalidArgument) {
  auto a = host_block(4096);
  auto r = b_->export_fd({a, 4000, 200});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
}

TEST_P(backend_conformance, ImportOfBadFdIsInvalidArgument) {
  exported_memory bad;
  bad.fd = -1;
  bad.size = 4096;
  auto r = b_->import_fd(bad, -1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);

  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  ::close(p[1]);
  exported_memory pipe_end;  // an fd that exists but cannot be mapped
  pipe_end.fd = p[0];
  pipe_end.size = 4096;
  auto r2 = b_->import_fd(pipe_end, -1);
  ASSERT_FALSE(r2);
  EXPECT_TRUE(r2.code() == errc::invalid_argument || r2.code() == errc::unsupported) << r2.err().describe();
  EXPECT_EQ(::fcntl(p[0], F_GETFD), -1) << "import_fd must close the fd it was given, even on failure";
}

TEST_P(backend_conformance, ImportOfRangeBeyondFdIsInvalidArgument) {
  auto a = host_block(4096);
  auto e = b_->export_fd(whole(a));
  if (!e && e.code() == errc::unsupported) GTEST_SKIP() << e.err().describe();
  ASSERT_TRUE(e) << e.err().describe();
  exported_memory lie = *e;
  lie.size = std::size_t{1} << 30;
  auto r = b_->import_fd(lie, -1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
}

TEST_P(backend_conformance, ImportOfDeviceMemoryWithoutDeviceIsRejected) {
  auto a = host_block(4096);
  auto e = b_->export_fd(whole(a));
  if (!e) GTEST_SKIP() << e.err().describe();
  exported_memory as_device = *e;
  as_device.kind = memory_kind::device;
  auto r = b_->import_fd(as_device, -1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("device"), std::string::npos);
}

TEST_P(backend_conformance, ExportedDeviceMemoryImportedInSameProcessSharesBytes) {
  REQUIRE_DEVICES(1);
  if (!b_->caps().export_fd) GTEST_SKIP() << GetParam() << " cannot export device memory";
  constexpr std::size_t n = 1 << 16;
  auto d = device_block(0, 2 * n);
  ASSERT_TRUE(d);
  const auto want = write_random({d, n, n}, 11);
  auto e = b_->export_fd({d, n, n});
  ASSERT_TRUE(e) << e.err().describe();
  EXPECT_EQ(e->size, n);
  EXPECT_EQ(e->kind, memory_kind::device);
  const int last = static_cast<int>(device_count()) - 1;
  auto imported = b_->import_fd(*e, last);
  ASSERT_TRUE(imported) << imported.err().describe();
  EXPECT_EQ((*imported)->size, n);
  EXPECT_EQ((*imported)->device, last);
  EXPECT_EQ(checksum_of(whole(*imported)), want);
  // And writes through the import show in the original.
  const auto again = write_random(whole(*imported), 12);
  EXPECT_EQ(checksum_of({d, n, n}), again);
}

// Runs the helper: it imports `exp` (its fd is sent and then closed here),
// checks it holds `expect`, then fills it with fill_random(seed).
std::string share_with_child(const std::string& backend_name, exported_memory exp, int device,
                             std::uint64_t expect, std::uint64_t seed) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) return "socketpair failed";
  // The child's end lands on a fixed number; dup2 to a different number
  // clears close-on-exec there.
  const int child_fd = sv[1] == 100 ? 101 : 100;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, sv[1], child_fd);
  const std::string helper = xbuf::test::bin_dir() + "/xbuf_backend_fd_helper";
  const std::string fd_text = std::to_string(child_fd);
  std::vector<char*> argv = {const_cast<char*>(helper.c_str()), const_cast<char*>("--backend"),
                             const_cast<char*>(backend_name.c_str()), const_cast<char*>("--socket"),
                             const_cast<char*>(fd_text.c_str()), nullptr};
  pid_t pid = -1;
  const int spawned = ::posix_spawn(&pid, helper.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(sv[1]);
  if (spawned != 0) {
    ::close(sv[0]);
    ::close(exp.fd);
    return "cannot start " + helper + ": " + std::strerror(spawned);
  }
  test::fd_request req;
  req.offset = exp.offset;
  req.size = exp.size;
  req.kind = static_cast<std::uint32_t>(exp.kind);
  req.device = device;
  req.expect_checksum = expect;
  req.write_seed = seed;
  const bool sent = test::send_with_fd(sv[0], req, exp.fd);
  ::close(exp.fd);  // the child has its own now
  std::string problem;
  test::fd_reply reply;
  pollfd pfd{sv[0], POLLIN, 0};
  if (!sent) {
    problem = "cannot send the fd to the helper";
  } else if (::poll(&pfd, 1, 120000) != 1) {
    problem = "the helper did not answer";
  } else if (::recv(sv[0], &reply, sizeof reply, 0) != static_cast<ssize_t>(sizeof reply)) {
    problem = "the helper's answer was cut short";
  } else if (reply.ok != 1) {
    problem = std::string("helper: ") + reply.message;
  }
  ::close(sv[0]);
  if (!problem.empty()) ::kill(pid, SIGKILL);
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  if (problem.empty() && !(WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0)) {
    problem = "the helper exited with status " + std::to_string(wstatus);
  }
  return problem;
}

TEST_P(backend_conformance, DeviceMemoryExportedByFdIsSharedWithAnotherProcess) {
  REQUIRE_DEVICES(1);
  if (!b_->caps().export_fd) GTEST_SKIP() << GetParam() << " cannot export device memory";
  constexpr std::size_t n = (std::size_t{1} << 20) + 4096;
  auto d = device_block(0, n + 8192);
  ASSERT_TRUE(d);
  const auto written = write_random({d, 8192, n}, 21);
  auto e = b_->export_fd({d, 8192, n});
  ASSERT_TRUE(e) << e.err().describe();
  ASSERT_EQ(share_with_child(GetParam(), *e, 0, written, 22), "");
  // The child's writes are visible here.
  std::vector<unsigned char> expect(n);
  test::fill_random(expect.data(), n, 22);
  EXPECT_EQ(checksum_of({d, 8192, n}), test::checksum(expect.data(), n));
}

TEST_P(backend_conformance, HostMemoryExportedByFdIsSharedWithAnotherProcess) {
  constexpr std::size_t n = 300000;
  auto h = host_block(n);
  ASSERT_TRUE(h);
  test::fill_random(h->host_ptr, n, 31);
  auto e = b_->export_fd({h, 1000, n - 1000});
  if (!e && e.code() == errc::unsupported) GTEST_SKIP() << e.err().describe();
  ASSERT_TRUE(e) << e.err().describe();
  const auto written = test::checksum(static_cast<char*>(h->host_ptr) + 1000, n - 1000);
  ASSERT_EQ(share_with_child(GetParam(), *e, -1, written, 32), "");
  std::vector<unsigned char> expect(n - 1000);
  test::fill_random(expect.data(), expect.size(), 32);
  EXPECT_EQ(std::memcmp(static_cast<char*>(h->host_ptr) + 1000, expect.data(), expect.size()), 0);
}

// ---------- peer queries ----------

TEST_P(backend_conformance, PeerQueriesAnswerForEveryDevicePair) {
  REQUIRE_DEVICES(1);
  const int n = static_cast<int>(device_count());
  for (int a = 0; a < n; ++a) {
    for (int p = 0; p < n; ++p) {
      auto access = b_->can_access_peer(a, p);
      EXPECT_TRUE(access) << a << "->" << p << ": " << access.err().describe();
      if (access && !b_->caps().peer_query) {
        EXPECT_FALSE(access->has_value()) << "a backend without peer_query must answer 'unknown'";
      }
      auto links = b_->link_count(a, p);
      EXPECT_TRUE(links) << a << "->" << p << ": " << links.err().describe();
    }
  }
}

TEST_P(backend_conformance, PeerQueriesOnMissingDeviceAreNoDevice) {
  const int n = static_cast<int>(device_count());
  EXPECT_EQ(b_->can_access_peer(0, n).code(), errc::no_device);
  EXPECT_EQ(b_->can_access_peer(-1, 0).code(), errc::no_device);
  EXPECT_EQ(b_->link_count(n, 0).code(), errc::no_device);
  if (n > 0) {
    auto r = b_->can_access_peer(0, n + 5);
    ASSERT_FALSE(r);
    EXPECT_NE(r.err().message.find("peer " + std::to_string(n + 5) + " does not exist"), std::string::npos)
        << r.err().message;
  }
}

INSTANTIATE_TEST_SUITE_P(all, backend_conformance, ::testing::ValuesIn(test::backend_factory_names()),
                         [](const ::testing::TestParamInfo<std::string>& p) { return p.param; });

}  // namespace
}  // namespace xbuf
