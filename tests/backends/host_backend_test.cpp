// SPDX-License-Identifier: MIT
//
// host_backend_test.cpp - what only the host backend has: the pinned cap, the
// mlock limit (strict and with fallback), NUMA node validation, no devices.
// The rest of the contract is covered by conformance_test.cpp.
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "backends/host/host_backend.hpp"
#include "tests/backends/backend_test_util.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<host_backend> make_host(host_config c = {}) {
  auto b = create_host_backend(c);
  EXPECT_TRUE(b) << b.err().describe();
  return b ? std::move(b).value() : nullptr;
}

// Locked memory of this process in bytes (VmLck in /proc/self/status).
std::size_t locked_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmLck:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// Makes mlock subject to a tiny RLIMIT_MEMLOCK in this process: drops
// CAP_IPC_LOCK (which ignores the limit) and lowers the limit. Only for the
// child processes of death tests. Returns false if that was not possible.
bool restrict_memlock(std::size_t limit) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) != 0) return false;
  data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
  if (::syscall(SYS_capset, &hdr, data) != 0) return false;
  rlimit rl{limit, limit};
  return ::setrlimit(RLIMIT_MEMLOCK, &rl) == 0;
}

class HostBackendTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(HostBackendTest, HasNoDevicesAndRefusesDeviceMemory) {
  auto b = make_host();
  ASSERT_TRUE(b);
  EXPECT_EQ(b->name(), "host");
  EXPECT_TRUE(b->devices().empty());
  EXPECT_TRUE(b->caps().pinned_host);
  EXPECT_EQ(b->allocate_device(0, 4096).code(), errc::no_device);
}

TEST_F(HostBackendTest, PinnedAllocationPastTheCapIsQuotaExceededNamingCapRequestAndPinned) {
  host_config c;
  c.pinned_limit_bytes = 64 * 1024;
  c.pinned_fallback_unlocked = true;  // this case is about the cap, not mlock
  auto b = make_host(c);
  ASSERT_TRUE(b);
  auto first = b->allocate_host(40 * 1024, true);
  ASSERT_TRUE(first) << first.err().describe();
  auto second = b->allocate_host(40 * 1024, true);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.code(), errc::quota_exceeded);
  const auto& msg = second.err().message;
  EXPECT_NE(msg.find("pinned cap of 65536 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pinning 40960 bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("40960 bytes pinned now"), std::string::npos) << msg;
  // Pageable memory is not capped.
  EXPECT_TRUE(b->allocate_host(40 * 1024, false));
}

TEST_F(HostBackendTest, FreedPinnedBlocksGiveTheirBytesBackToTheCap) {
  host_config c;
  c.pinned_limit_bytes = 64 * 1024;
  c.pinned_fallback_unlocked = true;
  auto b = make_host(c);
  ASSERT_TRUE(b);
  for (int round = 0; round < 4; ++round) {
    auto blk = b->allocate_host(48 * 1024, true);
    ASSERT_TRUE(blk) << "round " << round << ": " << blk.err().describe();
    EXPECT_EQ(b->stats().pinned_bytes, 48u * 1024);
  }
  EXPECT_EQ(b->stats().pinned_bytes, 0u);
}

TEST_F(HostBackendTest, ZeroPinnedCapRefusesEveryPinnedAllocation) {
  host_config c;
  c.pinned_limit_bytes = 0;
  auto b = make_host(c);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->allocate_host(1, true).code(), errc::quota_exceeded);
}

TEST_F(HostBackendTest, PinnedBlockIsPageLockedWhenTheKernelAllows) {
  auto b = make_host();
  ASSERT_TRUE(b);
  const std::size_t before = locked_bytes();
  auto blk = b->allocate_host(16 * 1024, true);
  if (!blk && blk.code() == errc::out_of_memory) GTEST_SKIP() << "mlock refused here: " << blk.err().message;
  ASSERT_TRUE(blk) << blk.err().describe();
  EXPECT_EQ((*blk)->kind, memory_kind::host_pinned);
  EXPECT_GE(locked_bytes(), before + 16 * 1024);
  EXPECT_TRUE(b->warnings().empty());
  blk = fail(errc::busy, "released");
  EXPECT_LE(locked_bytes(), before);
}

// The child of a death test: mlock is refused there.
void allocate_pinned_under_tiny_memlock_limit(bool fallback) {
  if (!restrict_memlock(64 * 1024)) {
    std::fprintf(stderr, "cannot restrict RLIMIT_MEMLOCK\n");
    std::_Exit(3);
  }
  host_config c;
  c.pinned_fallback_unlocked = fallback;
  auto b = create_host_backend(c);
  if (!b) {
    std::fprintf(stderr, "create: %s\n", b.err().describe().c_str());
    std::_Exit(4);
  }
  auto blk = (*b)->allocate_host(std::size_t{1} << 20, true);
  if (!fallback) {
    if (blk || blk.code() != errc::out_of_memory) {
      std::fprintf(stderr, "expected out_of_memory, got %s\n", blk ? "a block" : blk.err().describe().c_str());
      std::_Exit(5);
    }
    std::fprintf(stderr, "%s\n", blk.err().message.c_str());
    std::_Exit((*b)->stats().pinned_bytes == 0 ? 0 : 6);  // the reservation went back
  }
  if (!blk) {
    std::fprintf(stderr, "fallback refused: %s\n", blk.err().describe().c_str());
    std::_Exit(7);
  }
  const auto st = (*b)->stats();
  const auto warnings = (*b)->warnings();
  if ((*blk)->kind != memory_kind::host_pinned || st.unlocked_pinned_blocks != 1 || warnings.size() != 1) {
    std::_Exit(8);
  }
  std::fprintf(stderr, "%s\n", warnings[0].c_str());
  std::_Exit(0);
}

TEST_F(HostBackendTest, MlockRefusedIsOutOfMemoryNamingTheMemlockLimit) {
  EXPECT_EXIT(allocate_pinned_under_tiny_memlock_limit(false), ::testing::ExitedWithCode(0),
              "cannot pin 1048576 bytes: mlock failed.*RLIMIT_MEMLOCK is 65536 bytes");
}

TEST_F(HostBackendTest, MlockRefusedWithFallbackHandsOutUnlockedMemoryAndRecordsIt) {
  EXPECT_EXIT(allocate_pinned_under_tiny_memlock_limit(true), ::testing::ExitedWithCode(0),
              "RLIMIT_MEMLOCK is 65536 bytes.*handed out unlocked");
}

TEST_F(HostBackendTest, UnknownNumaNodeIsInvalidArgumentListingTheNodes) {
  auto b = make_host();
  ASSERT_TRUE(b);
  ASSERT_FALSE(b->numa_nodes().empty());
  int missing = 0;
  for (int n : b->numa_nodes()) missing = std::max(missing, n + 1);
  auto r = b->allocate_host(4096, false, missing);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("NUMA node " + std::to_string(missing) + " does not exist"), std::string::npos)
      << r.err().message;
  EXPECT_NE(r.err().message.find("nodes: " + std::to_string(b->numa_nodes()[0])), std::string::npos)
      << r.err().message;
}

TEST_F(HostBackendTest, EveryKnownNumaNodeCanBeAskedForAndIsRecorded) {
  auto b = make_host();
  ASSERT_TRUE(b);
  for (int node : b->numa_nodes()) {
    for (bool pinned : {false, true}) {
      auto r = b->allocate_host(64 * 1024, pinned, node);
      if (!r && r.code() == errc::out_of_memory && pinned) continue;  // mlock limit, tested above
      ASSERT_TRUE(r) << "node " << node << ": " << r.err().describe();
      EXPECT_EQ((*r)->numa_node, node);
      std::memset((*r)->host_ptr, 1, 64 * 1024);  // first touch on the bound node
    }
  }
  auto unbound = b->allocate_host(4096, false, -1);
  ASSERT_TRUE(unbound);
  EXPECT_EQ((*unbound)->numa_node, -1);
}

TEST_F(HostBackendTest, CopyFencesAreHostCopyFencesAndCopyBytes) {
  auto b = make_host();
  ASSERT_TRUE(b);
  auto src = b->allocate_host(100000, false);
  auto dst = b->allocate_host(100000, false);
  ASSERT_TRUE(src && dst);
  test::fill_random((*src)->host_ptr, 100000, 3);
  auto f = b->copy({*dst, 0, 100000}, {*src, 0, 100000});
  ASSERT_TRUE(f);
  EXPECT_EQ((*f)->driver_name(), "host-copy");
  ASSERT_TRUE((*f)->wait(60s));
  EXPECT_EQ((*f)->error(), 0);
  EXPECT_EQ(std::memcmp((*dst)->host_ptr, (*src)->host_ptr, 100000), 0);
  EXPECT_EQ(b->stats().bytes_copied, 100000u);
}

TEST_F(HostBackendTest, DeviceMemoryCannotBeImportedIntoHost) {
  auto b = make_host();
  ASSERT_TRUE(b);
  auto blk = b->allocate_host(4096, false);
  ASSERT_TRUE(blk);
  auto e = b->export_fd({*blk, 0, 4096});
  ASSERT_TRUE(e) << e.err().describe();
  exported_memory as_device = *e;
  as_device.kind = memory_kind::device;
  EXPECT_EQ(b->import_fd(as_device, 0).code(), errc::no_device);
}

TEST_F(HostBackendTest, PinnedAccountingSurvivesTheBackend) {
  host_config c;
  c.pinned_fallback_unlocked = true;
  auto b = make_host(c);
  ASSERT_TRUE(b);
  auto blk = b->allocate_host(8192, true);
  ASSERT_TRUE(blk);
  memory_block_ptr keep = *blk;
  b.reset();
  // Still mapped and writable; releasing it later touches no freed state (ASan).
  std::memset(keep->host_ptr, 7, 8192);
  EXPECT_EQ(static_cast<unsigned char*>(keep->host_ptr)[8191], 7);
}

}  // namespace
}  // namespace xbuf
