// SPDX-License-Identifier: MIT
// backends/gpu/device_window over the fake runtime (tests/backends), whose
// VMM allocations are memfds mapped into reserved ranges: what xbufd
// exports is imported into a range of its own, and another allocation is
// shown at the same address when the buffer moves. The same calls on a
// real GPU (cuMemImportFromShareableHandle, cuMemAddressReserve, cuMemMap,
// cuMemSetAccess) run in scripts/device-check.sh.
#include "backends/gpu/device_window.hpp"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <memory>

#include "backends/gpu/gpu_backend.hpp"
#include "tests/backends/fake_gpu_runtime.hpp"

namespace xbuf {
namespace {

class DeviceWindowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The daemon's side: a backend that exports; the client's: a device of
    // its own over another instance of the runtime.
    auto be = gpu::create_gpu_backend(test::make_fake_gpu_runtime(std::make_shared<test::fake_gpu_state>()), {});
    ASSERT_TRUE(be) << be.err().describe();
    daemon_ = std::move(*be);
    auto dev = gpu::open_device(test::make_fake_gpu_runtime(std::make_shared<test::fake_gpu_state>()), 0, true);
    ASSERT_TRUE(dev) << dev.err().describe();
    client_ = dev->device;
  }
  // A device allocation of `n` bytes filled with `value`, exported.
  exported_memory vram(std::size_t n, char value) {
    auto b = daemon_->allocate_device(0, n);
    EXPECT_TRUE(b) << b.err().describe();
    if (!b) return {};
    std::memset(reinterpret_cast<void*>((*b)->device_ptr), value, n);  // fake VRAM is host memory
    blocks_.push_back(*b);
    auto e = daemon_->export_fd(memory_span{*b, 0, n});
    EXPECT_TRUE(e) << e.err().describe();
    return e ? *e : exported_memory{};
  }
  static char at(std::uint64_t address, std::size_t i) { return reinterpret_cast<const char*>(address)[i]; }

  std::unique_ptr<backend> daemon_;
  std::shared_ptr<gpu::gpu_device> client_;
  std::vector<memory_block_ptr> blocks_;
};

TEST_F(DeviceWindowTest, ShowsTheExportAndThenAnotherAtTheSameAddress) {
  auto w = gpu::device_window::open(client_, vram(8192, 'a'));
  ASSERT_TRUE(w) << w.err().describe();
  const auto address = (*w)->address();
  ASSERT_NE(address, 0u);
  EXPECT_NE(address, blocks_[0]->device_ptr) << "an address of this process, not the exporter's";
  EXPECT_EQ(at(address, 0), 'a');
  EXPECT_EQ(at(address, 8191), 'a');
  ASSERT_TRUE((*w)->show(vram(8192, 'b')));
  EXPECT_EQ((*w)->address(), address) << "the pointer a framework holds stays valid";
  EXPECT_EQ(at(address, 100), 'b');
  ASSERT_TRUE((*w)->show(vram(4096, 'c'))) << "a smaller allocation fits";
  EXPECT_EQ(at(address, 4095), 'c');
}

TEST_F(DeviceWindowTest, ALargerAllocationIsRefusedAndTheOldOneStaysShown) {
  auto w = gpu::device_window::open(client_, vram(4096, 'a'));
  ASSERT_TRUE(w) << w.err().describe();
  auto s = (*w)->show(vram(3 * 4096, 'b'));
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::invalid_argument);
  EXPECT_NE(s.err().message.find("does not fit"), std::string::npos) << s.err().message;
  EXPECT_EQ(at((*w)->address(), 0), 'a');
}

TEST_F(DeviceWindowTest, HostMemoryAndBadFdsAreRefusedByName) {
  auto host = daemon_->allocate_host(4096, false);
  ASSERT_TRUE(host);
  auto e = daemon_->export_fd(memory_span{*host, 0, 4096});
  ASSERT_TRUE(e);
  auto w = gpu::device_window::open(client_, *e);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.code(), errc::unsupported);
  EXPECT_NE(w.err().message.find("not VRAM"), std::string::npos) << w.err().message;
  EXPECT_EQ(::fcntl(e->fd, F_GETFD), -1) << "the fd is consumed on failure too";
  exported_memory bad{.fd = -1, .offset = 0, .size = 4096, .kind = memory_kind::device};
  auto w2 = gpu::device_window::open(client_, bad);
  ASSERT_FALSE(w2);
  EXPECT_EQ(w2.code(), errc::invalid_argument) << w2.err().describe();
}

}  // namespace
}  // namespace xbuf
