// SPDX-License-Identifier: MIT
//
// copy_bandwidth_bench - host<->device copy bandwidth through the CUDA
// backend, against the raw driver copy in the same run.
//
// The limit is the driver itself: cuMemcpyAsync on a stream of our own
// between the same pinned host buffer and a cuMemAlloc'd device buffer,
// synchronized with cuStreamSynchronize. The backend adds a fence, an event
// and a poller per copy; the ratio (backend / raw, 1.00 = no overhead) says
// what that costs at each size.
//
// Output: bench/common/report.hpp's JSON lines, gpu_copy_{h2d,d2h}_<KiB>k,
// repetitions interleaved; --short: 1 MiB only. Without libcuda or a device
// it prints a "skipped" line saying why and exits 0, so it runs in any CI.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_driver.hpp"
#include "backends/cuda/cuda_error.hpp"
#include "bench/common/report.hpp"

namespace {

using clock_type = std::chrono::steady_clock;

double gib_per_s(std::size_t bytes, int reps, clock_type::duration d) {
  const double s = std::chrono::duration<double>(d).count();
  return static_cast<double>(bytes) * reps / s / (1024.0 * 1024.0 * 1024.0);
}

// Raw driver: one stream, one pinned buffer (registered memfd memory from the
// backend, so both sides copy from the same pages), one cuMemAlloc buffer.
struct raw_driver {
  std::shared_ptr<const xbuf::cuda_driver> drv;
  CUcontext ctx = nullptr;
  CUstream stream = nullptr;
  CUdeviceptr dev = 0;
  CUdevice device = 0;

  bool open(std::size_t bytes) {
    auto d = xbuf::cuda_driver::load();
    if (!d) return false;
    drv = *d;
    if (drv->cuDeviceGet(&device, 0) != CUDA_SUCCESS) return false;
    if (drv->cuDevicePrimaryCtxRetain(&ctx, device) != CUDA_SUCCESS) return false;
    if (drv->cuCtxPushCurrent_v2(ctx) != CUDA_SUCCESS) return false;
    return drv->cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) == CUDA_SUCCESS &&
           drv->cuMemAlloc_v2(&dev, bytes) == CUDA_SUCCESS;
  }
  ~raw_driver() {
    if (!drv) return;
    if (dev != 0) (void)drv->cuMemFree_v2(dev);
    if (stream != nullptr) (void)drv->cuStreamDestroy_v2(stream);
    CUcontext popped = nullptr;
    (void)drv->cuCtxPopCurrent_v2(&popped);
    if (ctx != nullptr) (void)drv->cuDevicePrimaryCtxRelease_v2(device);
  }
  clock_type::duration copy(CUdeviceptr dst, CUdeviceptr src, std::size_t n, int reps) {
    const auto t0 = clock_type::now();
    for (int i = 0; i < reps; ++i) {
      (void)drv->cuMemcpyAsync(dst, src, n, stream);
      (void)drv->cuStreamSynchronize(stream);
    }
    return clock_type::now() - t0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  namespace bench = xbuf::bench;
  const bool quick = bench::short_mode(argc, argv);
  auto made = xbuf::create_cuda_backend();
  if (!made) {
    bench::report_skipped("gpu_copy", made.err().describe());
    return 0;
  }
  auto& b = **made;
  std::fprintf(stderr, "device 0: %s (%s), driver %d\n", b.devices()[0].name.c_str(),
               b.devices()[0].pci_address.c_str(), (*xbuf::cuda_driver::load())->version());
  const std::vector<std::size_t> sizes =
      quick ? std::vector<std::size_t>{std::size_t{1} << 20}
            : std::vector<std::size_t>{std::size_t{64} << 10, std::size_t{1} << 20, std::size_t{16} << 20,
                                       std::size_t{256} << 20};
  const std::size_t max = sizes.back();
  auto host = b.allocate_host(max, true);
  auto dev = b.allocate_device(0, max);
  if (!host || !dev) {
    std::fprintf(stderr, "copy_bandwidth_bench: allocation failed: %s\n",
                 (!host ? host.err() : dev.err()).describe().c_str());
    return 1;
  }
  std::memset((*host)->host_ptr, 0x3c, max);
  raw_driver raw;
  if (!raw.open(max)) {
    std::fprintf(stderr, "copy_bandwidth_bench: raw driver setup failed\n");
    return 1;
  }
  const CUdeviceptr host_addr = (*host)->device_ptr;

  const int figure_reps = quick ? 3 : 7;
  for (std::size_t n : sizes) {
    const int reps = static_cast<int>(std::clamp<std::size_t>((std::size_t{1} << 30) / n, 5, 1000));
    for (bool h2d : {true, false}) {
      xbuf::memory_span d{*dev, 0, n};
      xbuf::memory_span h{*host, 0, n};
      // Warm up both paths once.
      (void)(*b.copy(h2d ? d : h, h2d ? h : d))->wait();
      (void)raw.copy(h2d ? raw.dev : host_addr, h2d ? host_addr : raw.dev, n, 1);
      bench::figure f{std::string("gpu_copy_") + (h2d ? "h2d_" : "d2h_") + std::to_string(n >> 10) + "k", "GiB/s",
                      "raw cuMemcpyAsync + cuStreamSynchronize, same pinned pages", bench::at_least(0.95), {}, {}};
      for (int r = 0; r < figure_reps; ++r) {
        const auto t0 = clock_type::now();
        for (int i = 0; i < reps; ++i) {
          auto c = b.copy(h2d ? d : h, h2d ? h : d);
          if (!c || !(*c)->wait() || (*c)->error() != 0) {
            std::fprintf(stderr, "copy_bandwidth_bench: copy failed\n");
            return 1;
          }
        }
        const auto ours = clock_type::now() - t0;
        const auto theirs = raw.copy(h2d ? raw.dev : host_addr, h2d ? host_addr : raw.dev, n, reps);
        f.add(gib_per_s(n, reps, ours), gib_per_s(n, reps, theirs));
      }
      bench::report(f);
    }
  }
  return 0;
}
