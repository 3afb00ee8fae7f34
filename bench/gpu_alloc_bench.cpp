// SPDX-License-Identifier: MIT
//
// gpu_alloc_bench - the memory manager over a real GPU against the driver
// itself (issue 11, "GPU ones that skip without a device").
//
// Figures (bench/common/report.hpp: one JSON line each, ratio = subject / limit,
// repetitions interleaved):
//   gpu_warm_alloc_1m
//       allocate + free of a 1 MiB VRAM buffer through the manager over the
//       CUDA backend, after a first one (warm), against cuMemAlloc_v2 +
//       cuMemFree_v2 of 1 MiB in the same context. The manager's buffer is
//       one cuMemCreate + map each (allocator/block_heap: an export reaches
//       that buffer only) and is cleared on the device; cuMemAlloc does
//       neither, so this says what tenant safety costs. Target <= 1.
//   gpu_evict_promote_16m
//       a 16 MiB buffer evicted from VRAM (D2H into pinned memory) and
//       promoted back (H2D) by the manager, against raw cuMemcpyAsync D2H +
//       H2D + cuStreamSynchronize of the same bytes between cuMemAlloc memory
//       and pinned host memory. Target >= 0.85 (GB/s over GB/s).
//
// Without libcuda or a device it prints a "skipped" line per figure saying
// why and exits 0, so it runs in any CI.
//
//   gpu_alloc_bench [--short]
#include <cstdio>
#include <string>

#include "allocator/memory_manager.hpp"
#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_driver.hpp"
#include "bench/common/report.hpp"

namespace {

using namespace xbuf;
namespace xb = xbuf::bench;

constexpr std::uint64_t MiB = 1ull << 20;

[[noreturn]] void die(const char* what, const std::string& why) {
  std::fprintf(stderr, "gpu_alloc_bench: %s: %s\n", what, why.c_str());
  std::exit(1);
}

// The driver's own calls, in the primary context of device 0.
struct raw_driver {
  std::shared_ptr<const cuda_driver> drv;
  CUcontext ctx = nullptr;
  CUdevice device = 0;

  bool open() {
    auto d = cuda_driver::load();
    if (!d) return false;
    drv = *d;
    return drv->cuDeviceGet(&device, 0) == CUDA_SUCCESS &&
           drv->cuDevicePrimaryCtxRetain(&ctx, device) == CUDA_SUCCESS &&
           drv->cuCtxPushCurrent_v2(ctx) == CUDA_SUCCESS;
  }
  ~raw_driver() {
    if (!drv || ctx == nullptr) return;
    CUcontext popped = nullptr;
    (void)drv->cuCtxPopCurrent_v2(&popped);
    (void)drv->cuDevicePrimaryCtxRelease_v2(device);
  }
  // Seconds for `n` cuMemAlloc + cuMemFree pairs of `bytes`.
  double alloc_free(std::size_t bytes, int n) {
    return xb::seconds_of([&] {
      for (int i = 0; i < n; ++i) {
        CUdeviceptr p = 0;
        if (drv->cuMemAlloc_v2(&p, bytes) != CUDA_SUCCESS) die("cuMemAlloc", "failed");
        (void)drv->cuMemFree_v2(p);
      }
    });
  }
};

}  // namespace

int main(int argc, char** argv) {
  const bool quick = xb::short_mode(argc, argv);
  auto made = create_cuda_backend();
  if (!made) {
    for (const char* name : {"gpu_warm_alloc_1m", "gpu_evict_promote_16m"}) {
      xb::report_skipped(name, made.err().describe());
    }
    return 0;
  }
  backend& be = **made;
  raw_driver raw;
  if (!raw.open()) die("driver", "cannot retain device 0's primary context");
  const int reps = quick ? 3 : 9;

  // Warm alloc + free.
  {
    manager_config mc;
    mc.device_backend = &be;
    mc.vram_capacity = {256 * MiB};
    mc.pinned_capacity = 64 * MiB;
    mc.pageable_capacity = 64 * MiB;
    auto mm = memory_manager::create(mc);
    if (!mm) die("manager", mm.err().describe());
    alloc_request req;
    req.size = MiB;
    req.placements = {placement::vram(0)};
    const int n = quick ? 20 : 200;
    auto pair = [&] {
      auto id = (*mm)->allocate(1, req);
      if (!id) die("allocate", id.err().describe());
      if (auto s = (*mm)->free(1, *id); !s) die("free", s.err().describe());
    };
    pair();  // warm: the context, the first cuMemCreate
    (void)raw.alloc_free(MiB, 1);
    xb::figure f{"gpu_warm_alloc_1m", "us", "cuMemAlloc_v2 + cuMemFree_v2 of 1 MiB", xb::at_most(1.0), {}, {}};
    for (int r = 0; r < reps; ++r) {
      const double lim = raw.alloc_free(MiB, n) * 1e6 / n;
      const double val = xb::seconds_of([&] {
        for (int i = 0; i < n; ++i) pair();
      }) * 1e6 / n;
      f.add(val, lim);
    }
    xb::report(f);
  }

  // Evict + promote of 16 MiB: VRAM holds one buffer; allocating a second
  // evicts the first, validate() brings it back.
  {
    const std::uint64_t size = 16 * MiB;
    manager_config mc;
    mc.device_backend = &be;
    mc.vram_capacity = {size};
    mc.pinned_capacity = 4 * size;
    mc.pageable_capacity = 4 * size;
    mc.promote_interval = std::chrono::steady_clock::duration::zero();
    auto mm = memory_manager::create(mc);
    if (!mm) die("manager", mm.err().describe());
    alloc_request req;
    req.size = size;
    req.placements = {placement::vram(0), placement::pinned()};
    auto a = (*mm)->allocate(1, req);
    if (!a) die("allocate", a.err().describe());
    const buffer_id ids[] = {*a};
    auto bounce = [&] {
      auto b = (*mm)->allocate(2, req);  // evicts `a` (D2H)
      if (!b) die("allocate", b.err().describe());
      (void)(*mm)->free(2, *b);
      if (auto v = (*mm)->validate(1, ids); !v) die("validate", v.err().describe());  // H2D
      if (auto f = (*mm)->pending_moves(1, *a); f && !(*f)->wait()) die("move", "wait failed");
    };
    bounce();
    // The limit's memory: cuMemAlloc VRAM, and pinned host pages from the
    // backend (a registered memfd, as the manager's pinned domain uses).
    CUdeviceptr dev = 0;
    CUstream stream = nullptr;
    auto host = be.allocate_host(size, true);
    if (!host) die("allocate_host", host.err().describe());
    if (raw.drv->cuMemAlloc_v2(&dev, size) != CUDA_SUCCESS ||
        raw.drv->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) {
      die("driver", "cuMemAlloc / cuStreamCreate failed");
    }
    const CUdeviceptr host_addr = (*host)->device_ptr;
    xb::figure f{"gpu_evict_promote_16m", "GB/s", "cuMemcpyAsync D2H + H2D + cuStreamSynchronize, pinned host memory",
                 xb::at_least(0.85), {}, {}};
    const int n = quick ? 2 : 8;
    const double bytes = 2.0 * static_cast<double>(size) * n;
    for (int r = 0; r < reps; ++r) {
      const double lim = xb::seconds_of([&] {
        for (int i = 0; i < n; ++i) {
          (void)raw.drv->cuMemcpyAsync(host_addr, dev, size, stream);
          (void)raw.drv->cuMemcpyAsync(dev, host_addr, size, stream);
          (void)raw.drv->cuStreamSynchronize(stream);
        }
      });
      const double val = xb::seconds_of([&] {
        for (int i = 0; i < n; ++i) bounce();
      });
      f.add(bytes / val / 1e9, bytes / lim / 1e9);
    }
    (void)raw.drv->cuStreamDestroy_v2(stream);
    (void)raw.drv->cuMemFree_v2(dev);
    (void)(*mm)->free(1, *a);
    xb::report(f);
  }
  return 0;
}
