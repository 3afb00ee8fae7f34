// SPDX-License-Identifier: MIT
//
// sim_copy_bench - what xbuf's machinery costs on top of moving bytes.
//
// Each line is measured against memcpy of the same bytes between the same
// memfd mappings in the same run (the limit: the sim backend's copy engine
// does a memcpy, so nothing can beat it):
//   backend copy : sim backend::copy() + wait for its fence
//   manager move : a buffer evicted from VRAM and promoted back by validate(),
//                  i.e. two moves with move_notify, fences and delayed free
// ratio = memcpy time / xbuf time (1.00 = no overhead; higher is better).
// Absolute numbers mean little on a shared machine; the ratio is the figure.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/sim/sim_backend.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using namespace xbuf;

template <class F>
double best_of(int runs, F&& f) {
  double best = 1e30;
  for (int i = 0; i < runs; ++i) {
    const auto t0 = clock_type::now();
    f();
    best = std::min(best, std::chrono::duration<double>(clock_type::now() - t0).count());
  }
  return best;
}

int run() {
  constexpr std::size_t MiB = 1 << 20;
  auto sim = create_sim_backend(make_sim_config(1, 512 * MiB));
  if (!sim) {
    std::fprintf(stderr, "sim_copy_bench: %s\n", sim.err().describe().c_str());
    return 1;
  }
  auto& be = **sim;
  std::printf("%-13s %10s %12s %12s %8s\n", "what", "size", "xbuf GB/s", "memcpy GB/s", "ratio");
  for (std::size_t size : {64 * 1024ul, 1 * MiB, 16 * MiB, 128 * MiB}) {
    auto host = be.allocate_host(size, false);
    auto dev = be.allocate_device(0, size);
    if (!host || !dev) {
      std::fprintf(stderr, "sim_copy_bench: allocation failed\n");
      return 1;
    }
    std::memset((*host)->host_ptr, 1, size);
    std::memset((*dev)->host_ptr, 2, size);
    const int reps = static_cast<int>(std::max<std::size_t>(1, (256 * MiB) / size));
    const double raw = best_of(5, [&] {
      for (int r = 0; r < reps; ++r) std::memcpy((*dev)->host_ptr, (*host)->host_ptr, size);
    });
    const double xb = best_of(5, [&] {
      for (int r = 0; r < reps; ++r) {
        auto f = be.copy({*dev, 0, size}, {*host, 0, size});
        if (!f || !(*f)->wait()) std::abort();
      }
    });
    const double bytes = static_cast<double>(size) * reps;
    std::printf("%-13s %9zuK %12.2f %12.2f %8.2f\n", "backend copy", size / 1024, bytes / xb / 1e9,
                bytes / raw / 1e9, raw / xb);
  }

  // Manager: one buffer bounced out of VRAM and back.
  for (std::size_t size : {1 * MiB, 16 * MiB}) {
    manager_config mc;
    mc.device_backend = &be;
    mc.vram_capacity = {2 * size};
    mc.pageable_capacity = 8 * size;
    mc.promote_interval = std::chrono::steady_clock::duration::zero();
    auto mm = memory_manager::create(mc);
    if (!mm) {
      std::fprintf(stderr, "sim_copy_bench: %s\n", mm.err().describe().c_str());
      return 1;
    }
    alloc_request req;
    req.size = size;
    req.placements = {placement::vram(0), placement::pageable()};
    auto a = (*mm)->allocate(1, req);
    req.placements = {placement::vram(0)};
    auto host = be.allocate_host(size, false);
    auto dev = be.allocate_device(0, size);
    if (!a || !host || !dev) std::abort();
    const int reps = 20;
    const double raw = best_of(3, [&] {
      for (int r = 0; r < 2 * reps; ++r) std::memcpy((*dev)->host_ptr, (*host)->host_ptr, size);
    });
    const double xb = best_of(3, [&] {
      for (int r = 0; r < reps; ++r) {
        // Two buffers of `size` fill VRAM (2 x size) and push `a` out ...
        auto p = (*mm)->allocate(2, req);
        auto q = (*mm)->allocate(2, req);
        if (!p || !q) std::abort();
        (void)(*mm)->free(2, *p);
        (void)(*mm)->free(2, *q);
        // ... and validate brings it back; CPU access waits for the move.
        const buffer_id ids[] = {*a};
        if (!(*mm)->validate(1, ids)) std::abort();
        auto m = (*mm)->begin_cpu_access(1, *a, cpu_access_mode::read);
        if (!m) std::abort();
        (void)(*mm)->end_cpu_access(1, *a);
      }
    });
    const double bytes = static_cast<double>(size) * 2 * reps;
    std::printf("%-13s %9zuK %12.2f %12.2f %8.2f\n", "manager move", size / 1024, bytes / xb / 1e9,
                bytes / raw / 1e9, raw / xb);
  }
  return 0;
}

}  // namespace

int main() { return run(); }
