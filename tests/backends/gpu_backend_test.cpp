// SPDX-License-Identifier: MIT
//
// The GPU backend skeleton (backends/gpu/), one suite for every runtime.
//
// GpuTest is instantiated once per GPU backend built here (cuda, hip: they
// need a real device and skip with the factory's reason otherwise; ctest
// label "gpu") and once over a fake runtime that keeps device memory in
// host memory (fake_gpu_runtime.hpp; runs anywhere, label "unit"), so the
// skeleton's copy, wait and export paths are exercised on every machine.
// GpuSkeletonTest checks, over the fake runtime, what only its counters
// can show.
#include <gtest/gtest.h>

#include <algorithm>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "backends/backend.hpp"
#include "backends/gpu/gpu_backend.hpp"
#include "tests/backends/backend_factories.hpp"
#include "tests/backends/backend_test_util.hpp"
#include "tests/backends/fake_gpu_runtime.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

memory_span whole(const memory_block_ptr& b, std::size_t n) { return memory_span{b, 0, n}; }

struct gpu_case {
  std::string name;    // backend name, also the fence kind's prefix
  std::string vendor;  // device_info::vendor
  std::function<result<std::unique_ptr<backend>>()> create;
};

// ctest names and failure messages show the runtime, not the struct's bytes.
void PrintTo(const gpu_case& c, std::ostream* os) { *os << c.name; }

result<std::unique_ptr<backend>> create_fake(std::shared_ptr<test::fake_gpu_state> state = nullptr) {
  if (!state) state = std::make_shared<test::fake_gpu_state>();
  return gpu::create_gpu_backend(test::make_fake_gpu_runtime(std::move(state)), {});
}

std::vector<gpu_case> real_gpu_cases() {
  std::vector<gpu_case> cases;
  for (const auto& name : test::gpu_backend_names()) {
    cases.push_back({name, name == "cuda" ? "nvidia" : "amd", [name] { return test::create_test_backend(name); }});
  }
  return cases;
}

class GpuTest : public ::testing::TestWithParam<gpu_case> {
 protected:
  void SetUp() override {
    auto b = GetParam().create();
    if (!b) {
      ASSERT_EQ(b.code(), errc::no_device) << b.err().describe();
      GTEST_SKIP() << "no " << GetParam().name << " device: " << b.err().message;
    }
    b_ = std::move(*b);
  }
  std::unique_ptr<backend> b_;
};

// Devices report a name, a PCI address in xbuf's form and memory.
TEST_P(GpuTest, DevicesHaveNamePciAddressAndMemory) {
  ASSERT_FALSE(b_->devices().empty());
  for (const auto& d : b_->devices()) {
    EXPECT_EQ(d.vendor, GetParam().vendor);
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.memory_bytes, 0u);
    EXPECT_EQ(d.pci_address.size(), 12u) << d.pci_address;
  }
}

// pinned host -> device -> device -> pageable host, checksum preserved.
TEST_P(GpuTest, CopiesPreserveBytesThroughDevices) {
  const std::size_t n = (8u << 20) + 123;
  auto pinned = b_->allocate_host(n, true);
  ASSERT_TRUE(pinned) << pinned.err().describe();
  auto pageable = b_->allocate_host(n, false);
  ASSERT_TRUE(pageable) << pageable.err().describe();
  auto d1 = b_->allocate_device(0, n);
  ASSERT_TRUE(d1) << d1.err().describe();
  EXPECT_GE((*d1)->size, n);
  EXPECT_EQ((*d1)->size % b_->caps().device_granularity, 0u);
  auto d2 = b_->allocate_device(b_->devices().size() > 1 ? 1 : 0, n);
  ASSERT_TRUE(d2) << d2.err().describe();

  test::fill_random((*pinned)->host_ptr, n, 42);
  const auto sum = test::checksum((*pinned)->host_ptr, n);
  std::memset((*pageable)->host_ptr, 0, n);

  auto f1 = b_->copy(whole(*d1, n), whole(*pinned, n));
  ASSERT_TRUE(f1) << f1.err().describe();
  EXPECT_EQ((*f1)->driver_name(), std::string(b_->name()) + "-event");
  auto f2 = b_->copy(whole(*d2, n), whole(*d1, n), std::span<const fence_ptr>(&*f1, 1));
  ASSERT_TRUE(f2) << f2.err().describe();
  auto f3 = b_->copy(whole(*pageable, n), whole(*d2, n), std::span<const fence_ptr>(&*f2, 1));
  ASSERT_TRUE(f3) << f3.err().describe();
  ASSERT_TRUE((*f3)->wait(30s));
  EXPECT_EQ((*f3)->error(), 0);
  EXPECT_TRUE((*f1)->is_signaled());
  EXPECT_EQ(test::checksum((*pageable)->host_ptr, n), sum);
}

// A copy waiting for a software fence does not start before it signals.
TEST_P(GpuTest, FillClearsDeviceMemoryOnTheStream) {
  const std::size_t n = (1u << 20) + 4096;
  auto host = b_->allocate_host(n, true);
  ASSERT_TRUE(host) << host.err().describe();
  auto dev = b_->allocate_device(0, n);
  ASSERT_TRUE(dev) << dev.err().describe();
  EXPECT_TRUE(b_->caps().fill);
  test::fill_random((*host)->host_ptr, n, 9);
  auto up = b_->copy(whole(*dev, n), whole(*host, n));
  ASSERT_TRUE(up) << up.err().describe();
  auto cleared = b_->fill(whole(*dev, n), 0, std::span<const fence_ptr>(&*up, 1));
  ASSERT_TRUE(cleared) << cleared.err().describe();
  EXPECT_EQ((*cleared)->driver_name(), std::string(b_->name()) + "-event");
  auto down = b_->copy(whole(*host, n), whole(*dev, n), std::span<const fence_ptr>(&*cleared, 1));
  ASSERT_TRUE(down) << down.err().describe();
  ASSERT_TRUE((*down)->wait(30s));
  EXPECT_EQ((*down)->error(), 0);
  const auto* p = static_cast<const unsigned char*>((*host)->host_ptr);
  EXPECT_EQ(std::count(p, p + n, 0), static_cast<std::ptrdiff_t>(n));
  auto on_host = b_->fill(whole(*host, n), 0);
  ASSERT_FALSE(on_host) << "a runtime memset is for device memory";
  EXPECT_EQ(on_host.code(), errc::unsupported);
}

TEST_P(GpuTest, CopyWaitsForSoftwareFence) {
  constexpr std::size_t n = 1 << 20;
  auto src = b_->allocate_host(n, true);
  auto dst = b_->allocate_host(n, true);
  auto dev = b_->allocate_device(0, n);
  ASSERT_TRUE(src && dst && dev);
  test::fill_random((*src)->host_ptr, n, 7);
  std::memset((*dst)->host_ptr, 0, n);
  auto gate = fence::create(fence::allocate_context(), 1);
  auto up = b_->copy(whole(*dev, n), whole(*src, n), std::span<const fence_ptr>(&gate, 1));
  ASSERT_TRUE(up) << up.err().describe();
  auto down = b_->copy(whole(*dst, n), whole(*dev, n), std::span<const fence_ptr>(&*up, 1));
  ASSERT_TRUE(down) << down.err().describe();
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE((*up)->is_signaled()) << "the copy ran before its software fence signaled";
  EXPECT_FALSE((*down)->is_signaled());
  ASSERT_TRUE(gate->signal());
  ASSERT_TRUE((*down)->wait(30s));
  EXPECT_EQ((*down)->error(), 0);
  EXPECT_EQ(test::checksum((*dst)->host_ptr, n), test::checksum((*src)->host_ptr, n));
}

// A dependency that failed fails the copy, which does not touch dst.
TEST_P(GpuTest, FailedDependencyFailsTheCopy) {
  constexpr std::size_t n = 4096;
  auto src = b_->allocate_host(n, true);
  auto dst = b_->allocate_host(n, true);
  ASSERT_TRUE(src && dst);
  std::memset((*src)->host_ptr, 1, n);
  std::memset((*dst)->host_ptr, 2, n);
  auto gate = fence::create(fence::allocate_context(), 1);
  auto f = b_->copy(whole(*dst, n), whole(*src, n), std::span<const fence_ptr>(&gate, 1));
  ASSERT_TRUE(f) << f.err().describe();
  ASSERT_TRUE(gate->signal(-EIO));
  ASSERT_TRUE((*f)->wait(10s));
  EXPECT_EQ((*f)->error(), -EIO);
  EXPECT_EQ(static_cast<unsigned char*>((*dst)->host_ptr)[0], 2);
}

// Export device memory by fd and import it again (same process, another
// mapping): bytes written through one are read through the other.
TEST_P(GpuTest, ExportedDeviceMemoryImportsWithSameBytes) {
  if (!b_->caps().export_fd) GTEST_SKIP() << b_->name() << ": device memory cannot be exported by fd here";
  constexpr std::size_t n = 1 << 20;
  auto dev = b_->allocate_device(0, n);
  auto host = b_->allocate_host(n, true);
  auto back = b_->allocate_host(n, true);
  ASSERT_TRUE(dev && host && back);
  test::fill_random((*host)->host_ptr, n, 99);
  auto up = b_->copy(whole(*dev, n), whole(*host, n));
  ASSERT_TRUE(up && (*up)->wait(30s));
  auto ex = b_->export_fd(memory_span{*dev, 4096, n - 4096});
  ASSERT_TRUE(ex) << ex.err().describe();
  EXPECT_GE(ex->fd, 0);
  auto imported = b_->import_fd(*ex, 0);
  ASSERT_TRUE(imported) << imported.err().describe();
  EXPECT_EQ((*imported)->size, n - 4096);
  std::memset((*back)->host_ptr, 0, n);
  auto down = b_->copy(memory_span{*back, 0, n - 4096}, whole(*imported, n - 4096));
  ASSERT_TRUE(down && (*down)->wait(30s));
  EXPECT_EQ(test::checksum((*back)->host_ptr, n - 4096),
            test::checksum(static_cast<char*>((*host)->host_ptr) + 4096, n - 4096));
}

TEST_P(GpuTest, PeerQueryAnswersForValidDevices) {
  auto self = b_->can_access_peer(0, 0);
  ASSERT_TRUE(self) << self.err().describe();
  ASSERT_TRUE(self->has_value());
  EXPECT_TRUE(**self);
  auto bad = b_->can_access_peer(0, static_cast<int>(b_->devices().size()));
  EXPECT_EQ(bad.code(), errc::no_device);
}

std::string case_name(const ::testing::TestParamInfo<gpu_case>& info) { return info.param.name; }

INSTANTIATE_TEST_SUITE_P(Runtime, GpuTest, ::testing::ValuesIn(real_gpu_cases()), case_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GpuTest);
INSTANTIATE_TEST_SUITE_P(Fake, GpuTest, ::testing::Values(gpu_case{"fake", "fake", [] { return create_fake(); }}),
                         case_name);

// --- the skeleton's own rules, seen through the fake runtime's counters ---

class GpuSkeletonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto b = create_fake(state_);
    ASSERT_TRUE(b) << b.err().describe();
    b_ = std::move(*b);
  }
  memory_block_ptr host(std::size_t n, bool pinned = true) {
    auto r = b_->allocate_host(n, pinned);
    EXPECT_TRUE(r) << r.err().describe();
    return r ? *r : nullptr;
  }
  std::shared_ptr<test::fake_gpu_state> state_ = std::make_shared<test::fake_gpu_state>();
  std::unique_ptr<backend> b_;
};

// An own fence already on a stream becomes a GPU wait, not a deferral; a
// deferred copy enqueues the GPU waits sorted when copy() was called.
TEST_F(GpuSkeletonTest, OwnEnqueuedFencesBecomeGpuWaitsAlsoForDeferredCopies) {
  auto a = host(4096), b = host(4096), c = host(4096);
  state_->hold_events = true;
  auto first = b_->copy(whole(b, 4096), whole(a, 4096));
  ASSERT_TRUE(first);
  auto direct = b_->copy(whole(c, 4096), whole(b, 4096), std::span<const fence_ptr>(&*first, 1));
  ASSERT_TRUE(direct);
  EXPECT_EQ(state_->stream_waits.load(), 1);
  auto gate = fence::create(fence::allocate_context(), 1);
  const fence_ptr deps[] = {*first, gate};
  auto deferred = b_->copy(whole(a, 4096), whole(c, 4096), deps);
  ASSERT_TRUE(deferred);
  EXPECT_EQ(state_->copies.load(), 2) << "the deferred copy ran before its software fence signaled";
  ASSERT_TRUE(gate->signal());
  for (int i = 0; i < 1000 && state_->copies.load() < 3; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(state_->copies.load(), 3);
  EXPECT_EQ(state_->stream_waits.load(), 2) << "the deferred copy lost its GPU-side wait";
  state_->hold_events = false;
  ASSERT_TRUE((*deferred)->wait(10s));
  EXPECT_EQ((*deferred)->error(), 0);
}

TEST_F(GpuSkeletonTest, DestroyingTheBackendCancelsWaitingCopiesAndDrainsStreams) {
  auto a = host(4096), b = host(4096);
  auto never = fence::create(fence::allocate_context(), 1);
  auto f = b_->copy(whole(b, 4096), whole(a, 4096), std::span<const fence_ptr>(&never, 1));
  ASSERT_TRUE(f);
  const int syncs_before = state_->synchronizes.load();
  b_.reset();
  ASSERT_TRUE((*f)->is_signaled());
  EXPECT_EQ((*f)->error(), -ECANCELED);
  EXPECT_GE(state_->synchronizes.load(), syncs_before + state_->devices);
  EXPECT_EQ(state_->copies.load(), 0);
  ASSERT_TRUE(never->signal());  // finds the backend gone: nothing runs
  EXPECT_EQ(state_->copies.load(), 0);
}

TEST_F(GpuSkeletonTest, DestructorSkipsStreamsOfADeviceThatCannotBeMadeCurrent) {
  state_->lost = true;
  b_.reset();
  EXPECT_EQ(state_->synchronizes.load(), 0);
  EXPECT_EQ(state_->current_depth.load(), 0);
  state_->lost = false;
}

TEST_F(GpuSkeletonTest, BlocksKeepTheirDeviceOpenAfterTheBackendAndUnregisterPinnedMemory) {
  auto pinned = host(4096, true);
  auto pageable = host(4096, false);
  auto made = b_->allocate_device(0, 4096);
  ASSERT_TRUE(pinned && pageable && made);
  // The block itself, out of its result: dropping it below is a plain reset.
  memory_block_ptr dev = std::move(made).value();
  EXPECT_EQ(state_->registered_blocks.load(), 1);
  b_.reset();
  EXPECT_GT(state_->open_devices.load(), 0) << "a block's device was closed under it";
  pinned.reset();
  EXPECT_EQ(state_->registered_blocks.load(), 0);
  pageable.reset();
  dev.reset();
  EXPECT_EQ(state_->open_devices.load(), 0);
  EXPECT_EQ(state_->live_streams.load(), 0);
  EXPECT_EQ(state_->current_depth.load(), 0);
}

TEST_F(GpuSkeletonTest, BlocksOfAnotherBackendAreRefused) {
  auto other = create_fake();
  ASSERT_TRUE(other);
  auto mine = host(4096);
  auto theirs = (*other)->allocate_host(4096, true);
  ASSERT_TRUE(theirs);
  auto f = b_->copy(whole(mine, 4096), whole(*theirs, 4096));
  ASSERT_FALSE(f);
  EXPECT_EQ(f.code(), errc::unsupported);
  EXPECT_EQ(b_->export_fd(whole(*theirs, 4096)).code(), errc::unsupported);
}

TEST_F(GpuSkeletonTest, LinearMemoryIsNotExportable) {
  auto state = std::make_shared<test::fake_gpu_state>();
  state->vmm = false;
  auto b = create_fake(state);
  ASSERT_TRUE(b);
  EXPECT_FALSE((*b)->caps().export_fd);
  auto dev = (*b)->allocate_device(0, 4096);
  ASSERT_TRUE(dev) << dev.err().describe();
  auto ex = (*b)->export_fd(whole(*dev, 4096));
  EXPECT_EQ(ex.code(), errc::unsupported);
  EXPECT_NE(ex.err().message.find("fake linear memory"), std::string::npos) << ex.err().message;
}

TEST_F(GpuSkeletonTest, NoDevicesIsNoDevice) {
  auto state = std::make_shared<test::fake_gpu_state>();
  state->devices = 0;
  auto b = create_fake(state);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::no_device);
}

TEST_F(GpuSkeletonTest, HostMemoryOnAMissingNodeIsInvalid) {
  auto r = b_->allocate_host(4096, false, 4000);
  ASSERT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("NUMA node 4000"), std::string::npos) << r.err().message;
}

}  // namespace
}  // namespace xbuf
