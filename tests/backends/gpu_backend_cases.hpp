// SPDX-License-Identifier: MIT
//
// gpu_backend_cases.hpp - cases that need a real GPU, shared by the CUDA and
// HIP backend tests (each runs them on its own backend and skips them, with
// the factory's reason, where no device exists).
#pragma once

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "backends/backend.hpp"
#include "tests/backends/backend_test_util.hpp"

namespace xbuf::test {

inline memory_span whole(const memory_block_ptr& b, std::size_t n) { return memory_span{b, 0, n}; }

// Devices report a name, a PCI address in xbuf's form and memory.
inline void gpu_check_device_info(backend& b, std::string_view vendor) {
  ASSERT_FALSE(b.devices().empty());
  for (const auto& d : b.devices()) {
    EXPECT_EQ(d.vendor, vendor);
    EXPECT_FALSE(d.name.empty());
    EXPECT_GT(d.memory_bytes, 0u);
    EXPECT_EQ(d.pci_address.size(), 12u) << d.pci_address;
  }
}

// pinned host -> device -> device -> pageable host, checksum preserved.
inline void gpu_check_round_trip(backend& b, std::size_t n) {
  auto pinned = b.allocate_host(n, true);
  ASSERT_TRUE(pinned) << pinned.err().describe();
  auto pageable = b.allocate_host(n, false);
  ASSERT_TRUE(pageable) << pageable.err().describe();
  auto d1 = b.allocate_device(0, n);
  ASSERT_TRUE(d1) << d1.err().describe();
  EXPECT_GE((*d1)->size, n);
  EXPECT_EQ((*d1)->size % b.caps().device_granularity, 0u);
  auto d2 = b.allocate_device(b.devices().size() > 1 ? 1 : 0, n);
  ASSERT_TRUE(d2) << d2.err().describe();

  fill_random((*pinned)->host_ptr, n, 42);
  const auto sum = checksum((*pinned)->host_ptr, n);
  std::memset((*pageable)->host_ptr, 0, n);

  auto f1 = b.copy(whole(*d1, n), whole(*pinned, n));
  ASSERT_TRUE(f1) << f1.err().describe();
  EXPECT_EQ((*f1)->driver_name(), std::string(b.name()) + "-event");
  auto f2 = b.copy(whole(*d2, n), whole(*d1, n), std::span<const fence_ptr>(&*f1, 1));
  ASSERT_TRUE(f2) << f2.err().describe();
  auto f3 = b.copy(whole(*pageable, n), whole(*d2, n), std::span<const fence_ptr>(&*f2, 1));
  ASSERT_TRUE(f3) << f3.err().describe();
  ASSERT_TRUE((*f3)->wait(std::chrono::seconds(30)));
  EXPECT_EQ((*f3)->error(), 0);
  EXPECT_TRUE((*f1)->is_signaled());
  EXPECT_EQ(checksum((*pageable)->host_ptr, n), sum);
}

// A copy waiting for a software fence does not start before it signals.
inline void gpu_check_waits_for_software_fence(backend& b) {
  constexpr std::size_t n = 1 << 20;
  auto src = b.allocate_host(n, true);
  auto dst = b.allocate_host(n, true);
  auto dev = b.allocate_device(0, n);
  ASSERT_TRUE(src && dst && dev);
  fill_random((*src)->host_ptr, n, 7);
  std::memset((*dst)->host_ptr, 0, n);
  auto gate = fence::create(fence::allocate_context(), 1);
  auto up = b.copy(whole(*dev, n), whole(*src, n), std::span<const fence_ptr>(&gate, 1));
  ASSERT_TRUE(up) << up.err().describe();
  auto down = b.copy(whole(*dst, n), whole(*dev, n), std::span<const fence_ptr>(&*up, 1));
  ASSERT_TRUE(down) << down.err().describe();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE((*up)->is_signaled()) << "the copy ran before its software fence signaled";
  EXPECT_FALSE((*down)->is_signaled());
  ASSERT_TRUE(gate->signal());
  ASSERT_TRUE((*down)->wait(std::chrono::seconds(30)));
  EXPECT_EQ((*down)->error(), 0);
  EXPECT_EQ(checksum((*dst)->host_ptr, n), checksum((*src)->host_ptr, n));
}

// A dependency that failed fails the copy, which does not touch dst.
inline void gpu_check_upstream_error(backend& b) {
  constexpr std::size_t n = 4096;
  auto src = b.allocate_host(n, true);
  auto dst = b.allocate_host(n, true);
  ASSERT_TRUE(src && dst);
  std::memset((*src)->host_ptr, 1, n);
  std::memset((*dst)->host_ptr, 2, n);
  auto gate = fence::create(fence::allocate_context(), 1);
  auto f = b.copy(whole(*dst, n), whole(*src, n), std::span<const fence_ptr>(&gate, 1));
  ASSERT_TRUE(f) << f.err().describe();
  ASSERT_TRUE(gate->signal(-EIO));
  ASSERT_TRUE((*f)->wait(std::chrono::seconds(10)));
  EXPECT_EQ((*f)->error(), -EIO);
  EXPECT_EQ(static_cast<unsigned char*>((*dst)->host_ptr)[0], 2);
}

// Export device memory by fd and import it again (same process, another
// mapping): bytes written through one are read through the other.
inline void gpu_check_export_import(backend& b) {
  if (!b.caps().export_fd) GTEST_SKIP() << b.name() << ": device memory cannot be exported by fd here";
  constexpr std::size_t n = 1 << 20;
  auto dev = b.allocate_device(0, n);
  auto host = b.allocate_host(n, true);
  auto back = b.allocate_host(n, true);
  ASSERT_TRUE(dev && host && back);
  fill_random((*host)->host_ptr, n, 99);
  auto up = b.copy(whole(*dev, n), whole(*host, n));
  ASSERT_TRUE(up && (*up)->wait(std::chrono::seconds(30)));
  auto ex = b.export_fd(memory_span{*dev, 4096, n - 4096});
  ASSERT_TRUE(ex) << ex.err().describe();
  EXPECT_GE(ex->fd, 0);
  auto imported = b.import_fd(*ex, 0);
  ASSERT_TRUE(imported) << imported.err().describe();
  EXPECT_EQ((*imported)->size, n - 4096);
  std::memset((*back)->host_ptr, 0, n);
  auto down = b.copy(memory_span{*back, 0, n - 4096}, whole(*imported, n - 4096));
  ASSERT_TRUE(down && (*down)->wait(std::chrono::seconds(30)));
  EXPECT_EQ(checksum((*back)->host_ptr, n - 4096),
            checksum(static_cast<char*>((*host)->host_ptr) + 4096, n - 4096));
}

inline void gpu_check_peer_query(backend& b) {
  auto self = b.can_access_peer(0, 0);
  ASSERT_TRUE(self) << self.err().describe();
  ASSERT_TRUE(self->has_value());
  EXPECT_TRUE(**self);
  auto bad = b.can_access_peer(0, static_cast<int>(b.devices().size()));
  EXPECT_EQ(bad.code(), errc::no_device);
}

}  // namespace xbuf::test
