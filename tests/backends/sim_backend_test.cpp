// SPDX-License-Identifier: MIT
//
// sim_backend_test.cpp - what only the software GPU has: its configuration,
// VRAM cap, copy rate, fault injection and shutdown. The rest of the backend
// contract is covered by conformance_test.cpp.
#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "backends/sim/sim_backend.hpp"
#include "tests/backends/backend_test_util.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

constexpr auto hang_guard = 60s;  // guards against hangs only

std::unique_ptr<sim_backend> make_sim(int devices = 2, std::size_t vram = std::size_t{16} << 20,
                                      double rate = 0) {
  sim_config c = make_sim_config(devices, vram);
  c.copy_bytes_per_second = rate;
  c.host.pinned_fallback_unlocked = true;
  auto b = create_sim_backend(c);
  EXPECT_TRUE(b) << b.err().describe();
  return b ? std::move(b).value() : nullptr;
}

memory_span whole(const memory_block_ptr& b) { return {b, 0, b->size}; }

TEST(SimBackendTest, ConfigWithoutDevicesIsNoDevice) {
  auto b = create_sim_backend(sim_config{});
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::no_device);
}

TEST(SimBackendTest, BadConfigIsInvalidArgumentNamingTheProblem) {
  sim_config zero = make_sim_config(1, 0);
  auto b = create_sim_backend(zero);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::invalid_argument);
  EXPECT_NE(b.err().message.find("sim0 has 0 bytes"), std::string::npos) << b.err().message;

  sim_config twice = make_sim_config(2, 4096);
  twice.devices[1].name = "sim0";
  auto b2 = create_sim_backend(twice);
  ASSERT_FALSE(b2);
  EXPECT_EQ(b2.code(), errc::invalid_argument);
  EXPECT_NE(b2.err().message.find("used twice"), std::string::npos) << b2.err().message;

  sim_config negative = make_sim_config(1, 4096);
  negative.copy_bytes_per_second = -1;
  auto b3 = create_sim_backend(negative);
  ASSERT_FALSE(b3);
  EXPECT_EQ(b3.code(), errc::invalid_argument);
}

TEST(SimBackendTest, DevicesReportConfiguredNamePciAddressNumaNodeAndVram) {
  sim_config c;
  c.devices.push_back({.name = "gpuA", .pci_address = "0000:3B:00.0", .numa_node = 1, .vram_bytes = 1 << 20});
  c.devices.push_back({.name = "", .pci_address = "", .numa_node = -1, .vram_bytes = 2 << 20});
  auto b = create_sim_backend(c);
  ASSERT_TRUE(b) << b.err().describe();
  auto devs = (*b)->devices();
  ASSERT_EQ(devs.size(), 2u);
  EXPECT_EQ(devs[0].name, "gpuA");
  EXPECT_EQ(devs[0].vendor, "sim");
  EXPECT_EQ(devs[0].pci_address, "0000:3b:00.0");  // lower case, as the contract says
  EXPECT_EQ(devs[0].numa_node, 1);
  EXPECT_EQ(devs[0].memory_bytes, 1u << 20);
  EXPECT_EQ(devs[1].name, "sim1");
  EXPECT_EQ(devs[1].memory_bytes, 2u << 20);
  EXPECT_EQ((*b)->name(), "sim");
  EXPECT_TRUE((*b)->caps().export_fd);
  EXPECT_TRUE((*b)->caps().host_mapped_device);
}

TEST(SimBackendTest, VramCapRejectsAllocationBeyondCapacityNamingDeviceRequestAndUse) {
  auto b = make_sim(1, std::size_t{1} << 20);
  ASSERT_TRUE(b);
  {
    auto first = b->allocate_device(0, 768 * 1024);
    ASSERT_TRUE(first) << first.err().describe();
    auto second = b->allocate_device(0, 512 * 1024);
    ASSERT_FALSE(second);
    EXPECT_EQ(second.code(), errc::out_of_memory);
    const auto& msg = second.err().message;
    EXPECT_NE(msg.find("sim0"), std::string::npos) << msg;
    EXPECT_NE(msg.find("524288 bytes"), std::string::npos) << msg;       // the request
    EXPECT_NE(msg.find("786432 of 1048576"), std::string::npos) << msg;  // used of capacity
    auto st = b->device_stats(0);
    ASSERT_TRUE(st);
    EXPECT_EQ(st->used_bytes, 768u * 1024);
    EXPECT_EQ(st->live_blocks, 1u);
  }  // the first block goes back here
  auto third = b->allocate_device(0, 512 * 1024);
  EXPECT_TRUE(third) << third.err().describe();
  EXPECT_EQ(b->device_stats(0)->used_bytes, 512u * 1024);
}

TEST(SimBackendTest, VramIsChargedInPagesAndPerDevice) {
  auto b = make_sim(2, std::size_t{1} << 20);
  ASSERT_TRUE(b);
  auto small = b->allocate_device(1, 1);
  ASSERT_TRUE(small);
  EXPECT_EQ((*small)->size % b->caps().device_granularity, 0u);
  EXPECT_EQ(b->device_stats(1)->used_bytes, (*small)->size);
  EXPECT_EQ(b->device_stats(0)->used_bytes, 0u);
}

TEST(SimBackendTest, SlowCopyRateTakesLongerThanFastRateInSameRun) {
  // Loose ordering only: the same copy, throttled to a rate far below memcpy
  // speed, must take longer than the unthrottled one in this run.
  constexpr std::size_t n = std::size_t{2} << 20;
  auto fast = make_sim(1, std::size_t{8} << 20, 0);
  auto slow = make_sim(1, std::size_t{8} << 20, 40e6);  // 40 MB/s: ~50 ms for 2 MiB
  ASSERT_TRUE(fast && slow);
  auto elapsed = [&](sim_backend& b) {
    auto h = b.allocate_host(n, false);
    auto d = b.allocate_device(0, n);
    EXPECT_TRUE(h && d);
    const auto start = fence_clock::now();
    auto f = b.copy(whole(*d), whole(*h));
    EXPECT_TRUE(f);
    EXPECT_TRUE((*f)->wait(hang_guard));
    return *(*f)->timestamp() - start;
  };
  const auto fast_time = elapsed(*fast);
  const auto slow_time = elapsed(*slow);
  EXPECT_GT(slow_time, fast_time);
}

TEST(SimBackendTest, FailNextCopiesSignalsEioAndLeavesDestinationUntouched) {
  auto b = make_sim(1);
  ASSERT_TRUE(b);
  constexpr std::size_t n = 1 << 16;
  auto h = b->allocate_host(n, false);
  auto d = b->allocate_device(0, n);
  ASSERT_TRUE(h && d);
  test::fill_random((*h)->host_ptr, n, 5);
  std::memset((*d)->host_ptr, 0x11, n);
  const auto before = test::checksum((*d)->host_ptr, n);

  ASSERT_TRUE(b->fail_next_copies(0, 2));
  std::vector<fence_ptr> fences;
  for (int i = 0; i < 2; ++i) {
    auto f = b->copy({*d, 0, n}, whole(*h));
    ASSERT_TRUE(f);
    fences.push_back(*f);
  }
  ASSERT_TRUE(wait_all(fences, hang_guard));
  EXPECT_EQ(fences[0]->error(), -EIO);
  EXPECT_EQ(fences[1]->error(), -EIO);
  EXPECT_EQ(test::checksum((*d)->host_ptr, n), before) << "a failed copy wrote its destination";

  auto third = b->copy({*d, 0, n}, whole(*h));
  ASSERT_TRUE(third);
  ASSERT_TRUE((*third)->wait(hang_guard));
  EXPECT_EQ((*third)->error(), 0) << "only the next 2 copies were to fail";
  EXPECT_EQ(test::checksum((*d)->host_ptr, n), test::checksum((*h)->host_ptr, n));
  EXPECT_EQ(b->device_stats(0)->copies_failed, 2u);
}

TEST(SimBackendTest, FailedCopyErrorPropagatesToCopiesThatWaitForIt) {
  auto b = make_sim(2);
  ASSERT_TRUE(b);
  auto h = b->allocate_host(4096, false);
  auto d0 = b->allocate_device(0, 4096);
  auto d1 = b->allocate_device(1, 4096);
  ASSERT_TRUE(h && d0 && d1);
  ASSERT_TRUE(b->fail_next_copies(0, 1));
  auto f0 = b->copy(whole(*d0), whole(*h));
  ASSERT_TRUE(f0);
  auto f1 = b->copy(whole(*d1), whole(*d0), std::span<const fence_ptr>(&*f0, 1));  // on device 1's engine
  ASSERT_TRUE(f1);
  ASSERT_TRUE((*f1)->wait(hang_guard));
  EXPECT_EQ((*f1)->error(), -EIO);
}

TEST(SimBackendTest, FenceDelayMakesDelayedDeviceSignalAfterUndelayedOne) {
  auto b = make_sim(2);
  ASSERT_TRUE(b);
  auto h = b->allocate_host(4096, false);
  auto d0 = b->allocate_device(0, 4096);
  auto d1 = b->allocate_device(1, 4096);
  ASSERT_TRUE(h && d0 && d1);
  ASSERT_TRUE(b->set_fence_delay(0, 200ms));
  auto slow = b->copy(whole(*d0), whole(*h));
  auto quick = b->copy(whole(*d1), whole(*h));
  ASSERT_TRUE(slow && quick);
  ASSERT_TRUE((*slow)->wait(hang_guard));
  ASSERT_TRUE((*quick)->wait(hang_guard));
  EXPECT_EQ((*slow)->error(), 0);
  EXPECT_LT(*(*quick)->timestamp(), *(*slow)->timestamp());
  ASSERT_TRUE(b->set_fence_delay(0, 0ms));
}

TEST(SimBackendTest, ResetDeviceSignalsEveryPendingCopyWithEioAndDeviceWorksAfterwards) {
  auto b = make_sim(1);
  ASSERT_TRUE(b);
  constexpr std::size_t n = 1 << 16;
  auto h = b->allocate_host(n, false);
  auto d = b->allocate_device(0, 4 * n);
  ASSERT_TRUE(h && d);
  test::fill_random((*h)->host_ptr, n, 9);
  std::memset((*d)->host_ptr, 0x22, 4 * n);
  const auto before = test::checksum((*d)->host_ptr, 4 * n);

  // A gate that does not signal holds the engine; three copies queue behind it.
  auto gate = fence::create(fence::allocate_context(), 1);
  const fence_ptr deps[] = {gate};
  std::vector<fence_ptr> pending;
  for (std::size_t i = 0; i < 4; ++i) {
    auto f = b->copy({*d, i * n, n}, whole(*h), i == 0 ? std::span<const fence_ptr>(deps) : std::span<const fence_ptr>());
    ASSERT_TRUE(f);
    pending.push_back(*f);
  }
  EXPECT_EQ(pending.back()->wait(20ms).code(), errc::timed_out);
  ASSERT_TRUE(b->reset_device(0));
  for (const auto& f : pending) {
    EXPECT_TRUE(f->is_signaled()) << f->describe() << ": reset_device returned before it signaled";
    EXPECT_EQ(f->error(), -EIO) << f->describe();
  }
  EXPECT_EQ(test::checksum((*d)->host_ptr, 4 * n), before);

  // Usable again, and the stale gate does not matter any more.
  auto after = b->copy({*d, 0, n}, whole(*h));
  ASSERT_TRUE(after) << after.err().describe();
  ASSERT_TRUE((*after)->wait(hang_guard));
  EXPECT_EQ((*after)->error(), 0);
  EXPECT_EQ(test::checksum((*d)->host_ptr, n), test::checksum((*h)->host_ptr, n));
  (void)gate->signal();
}

TEST(SimBackendTest, ResetCutsAFenceDelayShort) {
  auto b = make_sim(1);
  ASSERT_TRUE(b);
  auto h = b->allocate_host(4096, false);
  auto d = b->allocate_device(0, 4096);
  ASSERT_TRUE(h && d);
  ASSERT_TRUE(b->set_fence_delay(0, std::chrono::hours(1)));
  auto f = b->copy(whole(*d), whole(*h));
  ASSERT_TRUE(f);
  EXPECT_EQ((*f)->wait(20ms).code(), errc::timed_out);
  ASSERT_TRUE(b->reset_device(0));
  EXPECT_TRUE((*f)->is_signaled());
  EXPECT_EQ((*f)->error(), -EIO);
}

TEST(SimBackendTest, ResetWithLoseMakesDeviceLostUntilRecovered) {
  auto b = make_sim(2);
  ASSERT_TRUE(b);
  auto h = b->allocate_host(4096, false);
  auto d = b->allocate_device(0, 4096);
  ASSERT_TRUE(h && d);
  ASSERT_TRUE(b->reset_device(0, sim_reset_mode::lose));
  auto a = b->allocate_device(0, 4096);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.code(), errc::device_lost);
  EXPECT_NE(a.err().message.find("sim0"), std::string::npos);
  EXPECT_EQ(b->copy(whole(*d), whole(*h)).code(), errc::device_lost);
  EXPECT_TRUE(b->device_stats(0)->lost);
  EXPECT_TRUE(b->allocate_device(1, 4096)) << "the other device is not affected";

  ASSERT_TRUE(b->reset_device(0, sim_reset_mode::recover));
  EXPECT_TRUE(b->allocate_device(0, 4096));
}

TEST(SimBackendTest, FaultInjectionOnMissingDeviceIsNoDevice) {
  auto b = make_sim(1);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->fail_next_copies(1, 1).code(), errc::no_device);
  EXPECT_EQ(b->set_fence_delay(-1, 1ms).code(), errc::no_device);
  EXPECT_EQ(b->reset_device(7).code(), errc::no_device);
  EXPECT_EQ(b->device_stats(1).code(), errc::no_device);
}

TEST(SimBackendTest, CopyFencesAreSimCopyFencesOnPerDeviceTimelines) {
  auto b = make_sim(2);
  ASSERT_TRUE(b);
  auto h = b->allocate_host(4096, false);
  auto d0 = b->allocate_device(0, 4096);
  auto d1 = b->allocate_device(1, 4096);
  ASSERT_TRUE(h && d0 && d1);
  auto h2 = b->allocate_host(4096, false);
  ASSERT_TRUE(h2);
  auto a = b->copy(whole(*d0), whole(*h));
  auto a2 = b->copy(whole(*h2), whole(*d0));  // device to host runs on the source's engine
  auto c = b->copy(whole(*d1), whole(*h));
  ASSERT_TRUE(a && a2 && c);
  EXPECT_EQ((*a)->driver_name(), "sim-copy");
  EXPECT_EQ((*a)->context(), (*a2)->context());
  EXPECT_LT((*a)->seqno(), (*a2)->seqno());
  EXPECT_NE((*a)->context(), (*c)->context());
  const fence_ptr all[] = {*a, *a2, *c};
  EXPECT_TRUE(wait_all(all, hang_guard));
}

TEST(SimBackendTest, DestroyingBackendCancelsPendingCopiesAndBlocksStayUsable) {
  auto b = make_sim(1);
  ASSERT_TRUE(b);
  auto h = b->allocate_host(4096, false);
  auto d = b->allocate_device(0, 4096);
  ASSERT_TRUE(h && d);
  std::memset((*d)->host_ptr, 0x33, 4096);
  auto gate = fence::create(fence::allocate_context(), 1);
  const fence_ptr deps[] = {gate};
  auto f = b->copy(whole(*d), whole(*h), deps);
  ASSERT_TRUE(f);
  memory_block_ptr dev_block = *d;
  b.reset();
  EXPECT_TRUE((*f)->is_signaled());
  EXPECT_EQ((*f)->error(), -ECANCELED);
  // The block outlived its backend: still mapped, contents kept.
  EXPECT_EQ(static_cast<unsigned char*>(dev_block->host_ptr)[4095], 0x33);
  (void)gate->signal();
}

TEST(SimBackendTest, HostBlocksComeFromTheInternalHostBackend) {
  auto b = make_sim(1);
  ASSERT_TRUE(b);
  auto h = b->allocate_host(10000, true);
  ASSERT_TRUE(h) << h.err().describe();
  EXPECT_TRUE(b->host().owns(*h));
  EXPECT_GE(b->host().stats().pinned_bytes, 10000u);
}

}  // namespace
}  // namespace xbuf
