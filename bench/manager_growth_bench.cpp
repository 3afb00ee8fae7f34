// SPDX-License-Identifier: MIT
//
// manager_growth_bench - how the memory manager's allocate+free cost grows
// with the number of live buffers (issue 11, "Growth" row for the manager).
//
// One operation is a pair: free a live buffer drawn at random and allocate a
// new one in its place, so the live count stays fixed. Live counts 1k, 64k
// and 1M (--short: 1k and 64k), each in its own manager over the sim
// backend, pageable placement (the host heap's shared chunks: no fd and no
// clear per buffer, so what is measured is the manager - lookup, accounting,
// LRU, the heap's buddy - not page faults), sizes 4-16 KiB. Buffers are never
// touched, so 1M of them cost address space, not memory.
//
// Every count runs once per round, rounds interleaved; the limit is the 1k
// figure of the same round, the target (issue 11) 1M/1k <= 2.
//
//   manager_growth_bench [--short]
#include <cstdint>
#include <cstdio>
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
    req.size = 4096 * (1 + rng() % 4);
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
  mc.pageable_capacity = std::uint64_t{live} * 16384 + (256ull << 20);
  auto mm = memory_manager::create(mc);
  if (!mm) die("create", mm.err().describe());
  workload w{std::move(*mm), {}, xorshift{seed}, {}};
  w.req.placements = {placement::pageable()};
  w.live.reserve(live);
  while (w.live.size() < live) w.live.push_back(w.allocate());
  return w;
}

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
  for (std::size_t k = 0; k < counts.size(); ++k) {
    std::fprintf(stderr, "manager_growth_bench: filling %zu live buffers\n", counts[k]);
    loads.push_back(make(**sim, counts[k], 0x9e3779b97f4a7c15ULL + k));
    (void)loads.back().run(pairs);  // churn to the steady state's layout
  }
  std::vector<bench::figure> figs;
  for (std::size_t k = 1; k < counts.size(); ++k) {
    figs.push_back({"manager_growth_" + std::to_string(counts[k] / 1000) + "k", "ns",
                    "own 1k figure, same round", bench::at_most(2.0), {}, {}});
  }
  for (int round = 0; round < rounds; ++round) {
    std::fprintf(stderr, "manager_growth_bench: round %d/%d\n", round + 1, rounds);
    std::vector<double> ns;
    for (auto& w : loads) ns.push_back(w.run(pairs));
    for (std::size_t k = 1; k < counts.size(); ++k) figs[k - 1].add(ns[k], ns[0]);
  }
  for (auto& w : loads) {
    for (auto id : w.live) (void)w.mm->free(1, id);
  }
  for (const auto& f : figs) bench::report(f, "\"pairs\":" + std::to_string(pairs));
  return 0;
}
