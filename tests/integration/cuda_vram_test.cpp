// SPDX-License-Identifier: MIT
//
// VRAM through xbufd on a real NVIDIA GPU (label "gpu"; skipped without
// one): `xbufd --backend cuda` exports each VRAM buffer as its own
// cuMemCreate allocation, and client processes import it into device
// ranges of their own (cuMemImportFromShareableHandle, cuMemMap,
// cuMemSetAccess). Checked with real copies (cuMemcpy through the GPU
// skeleton's primitives):
//   - a second process imports the fd the first passed on and reads the
//     bytes the first wrote, on the device;
//   - the first process's pointer stays the same across moves to pinned
//     memory (a CPU access migrates the buffer) and back (validate), with
//     its bytes, 20 times.
// Run by scripts/device-check.sh. The parent never touches CUDA (it forks
// the clients); each client loads the driver itself.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "backends/gpu/gpu_device.hpp"
#include "backends/select.hpp"
#include "client/allocator.hpp"
#include "tests/backends/backend_test_util.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

constexpr std::size_t bytes = 4 << 20;

// This process's device 0, for copies in and out of VRAM views.
struct local_device {
  std::shared_ptr<gpu::gpu_device> dev;
  static std::optional<local_device> open() {
    auto rt = load_gpu_runtime(backend_choice::cuda);
    if (!rt) return std::nullopt;
    auto d = gpu::open_device(*rt, 0, true);
    if (!d) return std::nullopt;
    return local_device{d->device};
  }
  bool copy(void* dst, const void* src, std::size_t n) const {
    gpu::device_scope scope(*dev);
    if (!scope.ok()) return false;
    auto s = dev->runtime->memcpy_async(dev->ref, reinterpret_cast<std::uintptr_t>(dst),
                                        reinterpret_cast<std::uintptr_t>(src), n, dev->stream);
    dev->runtime->stream_synchronize(dev->stream);
    return static_cast<bool>(s);
  }
};

std::vector<char> pattern(char seed) {
  std::vector<char> v(bytes);
  for (std::size_t i = 0; i < bytes; ++i) v[i] = static_cast<char>(seed + static_cast<char>(i % 251));
  return v;
}

int wait_child(pid_t pid) {
  int status = 0;
  if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

class CudaVramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/dev/nvidiactl", F_OK) != 0) GTEST_SKIP() << "no NVIDIA GPU here (/dev/nvidiactl is missing)";
    daemon_ = std::make_unique<test::scratch_daemon>(std::vector<std::string>{"--backend", "cuda", "--pinned", "256M"});
    if (!daemon_->up()) GTEST_SKIP() << "xbufd --backend cuda did not start: " << daemon_->log();
  }
  std::unique_ptr<test::scratch_daemon> daemon_;
};

TEST_F(CudaVramTest, ASecondProcessReadsWhatTheFirstWroteThroughAnImportedFd) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const std::string sock = daemon_->socket();
  const pid_t writer = ::fork();
  ASSERT_GE(writer, 0);
  if (writer == 0) {
    auto body = [&]() -> int {
      auto a = client::connect_daemon(sock, "writer");
      auto local = local_device::open();
      if (!a || !local) return 10;
      auto b = (*a)->alloc({.size = bytes, .placements = {placement::vram(0)}, .name = "shared",
                            .cpu_access = false, .no_evict = false, .alignment = 0});
      if (!b) return 11;
      auto at = (*a)->attach(*b, 0, attach_mode::dynamic);
      if (!at) return 12;
      auto v = (*a)->begin_use(*at, fence_usage::write);
      if (!v || v->where != placement::vram(0)) return 13;
      const auto want = pattern('w');
      if (!local->copy(v->data, want.data(), bytes)) return 14;
      if (!(*a)->end_use(*at)) return 15;
      auto e = (*a)->export_fd(*b);
      if (!e) return 16;
      const int kind = static_cast<int>(e->kind);
      if (!test::send_with_fd(sv[0], kind, e->fd)) return 17;
      int done = 0;
      if (::read(sv[0], &done, sizeof done) != sizeof done) return 18;  // the reader is through
      return done;
    };
    ::_exit(body());
  }
  const pid_t reader = ::fork();
  ASSERT_GE(reader, 0);
  if (reader == 0) {
    auto body = [&]() -> int {
      int kind = 0, fd = -1;
      if (!test::receive_with_fd(sv[1], kind, fd) || fd < 0) return 20;
      if (kind != static_cast<int>(memory_kind::device)) return 21;
      auto a = client::connect_daemon(sock, "reader");
      auto local = local_device::open();
      if (!a || !local) return 22;
      auto imp = (*a)->import_fd(fd);
      ::close(fd);
      if (!imp) return 23;
      auto at = (*a)->attach(imp->buffer, 0, attach_mode::dynamic);
      if (!at) return 24;
      auto v = (*a)->begin_use(*at, fence_usage::read);
      if (!v) return 25;
      std::vector<char> got(bytes);
      if (!local->copy(got.data(), v->data, bytes)) return 26;
      (void)(*a)->end_use(*at);
      return got == pattern('w') ? 0 : 1;
    };
    const int rc = body();
    (void)!::write(sv[1], &rc, sizeof rc);
    ::_exit(rc);
  }
  EXPECT_EQ(wait_child(reader), 0) << "1: the reader saw other bytes; 2x: see the code";
  EXPECT_EQ(wait_child(writer), 0) << daemon_->log();
}

TEST_F(CudaVramTest, APointerIntoVramStaysTheSameAcrossMovesToHostAndBack) {
  const std::string sock = daemon_->socket();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto body = [&]() -> int {
      auto a = client::connect_daemon(sock, "stable");
      auto local = local_device::open();
      if (!a || !local) return 10;
      auto b = (*a)->alloc({.size = bytes, .placements = {placement::vram(0), placement::pinned()}, .name = "w",
                            .cpu_access = true, .no_evict = false, .alignment = 0});
      if (!b) return 11;
      auto at = (*a)->attach(*b, 0, attach_mode::dynamic);
      if (!at) return 12;
      auto first = (*a)->begin_use(*at, fence_usage::write);
      if (!first || first->where != placement::vram(0)) return 13;
      void* const ptr = first->data;
      if (!local->copy(ptr, pattern('s').data(), bytes) || !(*a)->end_use(*at)) return 14;
      const buffer_id ids[] = {*b};
      for (int round = 0; round < 20; ++round) {
        // The CPU cannot reach VRAM: its access moves the buffer to pinned memory.
        auto cpu = (*a)->cpu_begin(*b, false);
        if (!cpu) return 15;
        if (std::memcmp(cpu->data, pattern('s').data(), bytes) != 0) return 2;  // lost on the way out
        if (!(*a)->cpu_end(*b)) return 16;
        if (!(*a)->validate(ids)) return 17;  // back to VRAM
        auto v = (*a)->begin_use(*at, fence_usage::read);
        if (!v) return 18;
        if (v->where != placement::vram(0)) return 3;  // not promoted back
        if (v->data != ptr) return 4;                   // the address moved
        std::vector<char> got(bytes);
        if (!local->copy(got.data(), v->data, bytes)) return 19;
        if (!(*a)->end_use(*at)) return 20;
        if (got != pattern('s')) return 5;              // lost on the way back
      }
      return 0;
    };
    ::_exit(body());
  }
  EXPECT_EQ(wait_child(pid), 0) << "2/5: bytes lost, 3: not promoted, 4: the pointer changed; " << daemon_->log();
}

}  // namespace
}  // namespace xbuf
