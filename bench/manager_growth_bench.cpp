// SPDX-License-Identifier: MIT
//
// manager_growth_bench - how the memory manager's allocate+free cost grows
// with the number of live buffers (issue 11, "Growth" row for the manager).
//
// One operation is a pair: free a live buffer drawn at random and allocate a
// new one in its place, so the live count stays fixed. Live counts 1k, 64k
// and 1M (--short: 1k and 64k), each in its own manager over the sim
// backend, pageable placement (the host heap's shared chunks: no fd per
// buffer), one page each.
//
// A page that held an earlier buffer is cleared before its next owner sees
// it (host_heap keeps freed pages: faulting fresh ones in costs more). With
// 1k live pages that clear hits the cache, with 1M it misses it and the TLB:
// memory-hierarchy growth no bookkeeping can remove. So beside the plain
// figure (manager_growth_<n>k) the bench measures the clear's floor - a 4 KiB
// memset of a random page of a pool as large as the live set (up to 1 GiB,
// already far past every cache) - and reports manager_growth_over_clear_<n>k:
// the pair's cost less that floor, against the same at 1k. That is the
// manager's own growth (lookup, accounting, LRU, the buddy).
//
// Every count runs once per round, rounds interleaved; the limit is the 1k
// figure of the same round, the target (issue 11) 1M/1k <= 2. A full run
// touches about 5 GiB.
//
//   manager_growth_bench [--short]
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/sim/sim_backend.hpp"
#include "bench/common/report.hpp"

namespace {

using namespace xbuf;

[[noreturn]] void die(const char* what, const std::string& why) {
  std::fprintf(stderr, "manager_growth_bench: %s: %s\n", what, why.c_str());
  std::exit(1);
}

struct xorshift {
  std::uint64_t s;
  std::uint64_t operator()() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

struct workload {
  std::unique_ptr<memory_manager> mm;
  std::vector<buffer_id> live;
  xorshift rng;
  alloc_request req;

  buffer_id allocate() {
    req.size = 4096;
    auto id = mm->allocate(1, req);
    if (!id) die("allocate", id.err().describe());
    return *id;
  }
  // Pairs of free + allocate; ns per pair.
  double run(std::size_t pairs) {
    const double s = bench::seconds_of([&] {
      for (std::size_t i = 0; i < pairs; ++i) {
        buffer_id& slot = live[rng() % live.size()];
        if (auto st = mm->free(1, slot); !st) die("free", st.err().describe());
        slot = allocate();
      }
    });
    return s * 1e9 / static_cast<double>(pairs);
  }
};

workload make(backend& be, std::size_t live, std::uint64_t seed) {
  manager_config mc;
  mc.device_backend = &be;
  mc.vram_capacity = {1ull << 20};
  mc.pageable_capacity = std::uint64_t{live} * 4096 + (256ull << 20);
  auto mm = memory_manager::create(mc);
  if (!mm) die("create", mm.err().describe());
  workload w{std::move(*mm), {}, xorshift{seed}, {}};
  w.req.placements = {placement::pageable()};
  w.live.reserve(live);
  while (w.live.size() < live) w.live.push_back(w.allocate());
  return w;
}

// The clear's floor: ns per 4 KiB memset of a random page among `pages`.
struct clear_floor {
  std::vector<std::uint8_t> pool;
  xorshift rng{0x2545F4914F6CDD1DULL};
  explicit clear_floor(std::size_t pages) : pool(pages * 4096, 1) {}
  double run(std::size_t n) {
    const std::size_t pages = pool.size() / 4096;
    const double s = bench::seconds_of([&] {
      for (std::size_t i = 0; i < n; ++i) std::memset(&pool[(rng() % pages) * 4096], 0, 4096);
    });
    return s * 1e9 / static_cast<double>(n);
  }
};

}  // namespace

int main(int argc, char** argv) {
  const bool quick = bench::short_mode(argc, argv);
  auto sim = create_sim_backend(make_sim_config(1, 4ull << 20));  // 1 MiB of VRAM per manager
  if (!sim) die("sim backend", sim.err().describe());
  const std::vector<std::size_t> counts =
      quick ? std::vector<std::size_t>{1000, 64000} : std::vector<std::size_t>{1000, 64000, 1000000};
  const int rounds = quick ? 3 : 7;
  const std::size_t pairs = quick ? 20000 : 100000;

  std::vector<workload> loads;
  std::vector<clear_floor> floors;
  for (std::size_t k = 0; k < counts.size(); ++k) {
    floors.emplace_back(std::min<std::size_t>(counts[k], 256 * 1024));
    std::fprintf(stderr, "manager_growth_bench: filling %zu live buffers\n", counts[k]);
    loads.push_back(make(**sim, counts[k], 0x9e3779b97f4a7c15ULL + k));
    // Churn to the steady state: the layout, and pages that have held a
    // buffer (the first clear of a page faults it in; later ones do not).
    (void)loads.back().run(std::max(pairs, 2 * counts[k]));
  }
  std::vector<bench::figure> figs, over;
  for (std::size_t k = 1; k < counts.size(); ++k) {
    const std::string n = std::to_string(counts[k] / 1000) + "k";
    figs.push_back({"manager_growth_" + n, "ns", "own 1k figure, same round", bench::at_most(2.0), {}, {}});
    over.push_back({"manager_growth_over_clear_" + n, "ns", "own 1k figure less its clear floor, same round",
                    bench::at_most(2.0), {}, {}});
  }
  for (int round = 0; round < rounds; ++round) {
    std::fprintf(stderr, "manager_growth_bench: round %d/%d\n", round + 1, rounds);
    std::vector<double> ns, floor_ns;
    for (auto& w : loads) ns.push_back(w.run(pairs));
    for (auto& f : floors) floor_ns.push_back(f.run(pairs));
    for (std::size_t k = 1; k < counts.size(); ++k) {
      figs[k - 1].add(ns[k], ns[0]);
      over[k - 1].add(ns[k] - floor_ns[k], ns[0] - floor_ns[0]);
    }
  }
  for (auto& w : loads) {
    for (auto id : w.live) (void)w.mm->free(1, id);
  }
  for (std::size_t k = 0; k < figs.size(); ++k) {
    bench::report(figs[k], "\"pairs\":" + std::to_string(pairs));
    bench::report(over[k], "\"pairs\":" + std::to_string(pairs));
  }
  return 0;
}
