// SPDX-License-Identifier: MIT
//
// range_allocator_bench - alloc+free cost of the buddy range allocator as the
// heap grows, printed as ratios against limits measured in the same run.
//
//   fresh/L      heap of 2^L chunks, all free; allocate one chunk and free it.
//                This is the worst path: L splits down, L merges back up, so the
//                cost should grow linearly in L = log2(n) (ns per level flat).
//                Limit: malloc(4096) + free of the C library, a constant.
//   populated/L  heap of 2^L chunks filled to ~50% with blocks of 1..16 chunks;
//                each iteration frees a random live block and allocates a new
//                random one (steady state, fragmented heap).
//                Limit: std::map<offset, size> with the same number of live
//                entries, erase + insert per iteration - what an offset-keyed
//                first-fit allocator would pay at least.
#include "allocator/range_allocator.hpp"

#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

namespace {

constexpr std::uint64_t chunk = 4096;

// Cheap deterministic generator so RNG cost is negligible and identical in
// every benchmark that uses it.
struct xorshift {
  std::uint64_t s = 0x9e3779b97f4a7c15ULL;
  std::uint64_t operator()() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

xbuf::range_allocator make(std::uint64_t chunks) {
  auto a = xbuf::range_allocator::create(chunks * chunk, chunk);
  if (!a) {
    std::fprintf(stderr, "create failed: %s\n", a.err().message.c_str());
    std::abort();
  }
  return std::move(a).value();
}

void bm_fresh(benchmark::State& state) {
  const auto levels = static_cast<unsigned>(state.range(0));
  auto a = make(std::uint64_t{1} << levels);
  for (auto _ : state) {
    auto r = a.allocate(chunk);
    benchmark::DoNotOptimize(r);
    if (!r || !a.free(*r)) state.SkipWithError("allocate/free failed");
  }
  state.counters["levels"] = levels;
}

void bm_malloc_free(benchmark::State& state) {
  for (auto _ : state) {
    void* p = std::malloc(chunk);
    benchmark::DoNotOptimize(p);
    std::free(p);
  }
}

struct populated {
  xbuf::range_allocator alloc;
  std::vector<xbuf::range> live;
};

populated fill_half(unsigned levels) {
  populated p{make(std::uint64_t{1} << levels), {}};
  xorshift rng;
  while (p.alloc.stats().used_block_bytes < p.alloc.size() / 2) {
    auto r = p.alloc.allocate(chunk * (1 + rng() % 16));
    if (!r) break;
    p.live.push_back(*r);
  }
  return p;
}

void bm_populated(benchmark::State& state) {
  populated p = fill_half(static_cast<unsigned>(state.range(0)));
  xorshift rng;
  for (auto _ : state) {
    auto& slot = p.live[rng() % p.live.size()];
    if (!p.alloc.free(slot)) state.SkipWithError("free failed");
    auto r = p.alloc.allocate(chunk * (1 + rng() % 16));
    if (!r) {
      state.SkipWithError("allocate failed at 50% fill");
      break;
    }
    slot = *r;
  }
  state.counters["live"] = static_cast<double>(p.live.size());
  state.counters["ext_frag"] = p.alloc.stats().external_fragmentation;
}

void bm_map(benchmark::State& state) {
  // Same live count as populated/L, so both sides see the same n.
  const std::size_t n = fill_half(static_cast<unsigned>(state.range(0))).live.size();
  std::map<std::uint64_t, std::uint64_t> m;
  std::vector<std::uint64_t> keys;
  xorshift rng;
  keys.reserve(n);
  while (keys.size() < n) {
    const std::uint64_t k = rng();
    if (m.emplace(k, chunk).second) keys.push_back(k);
  }
  for (auto _ : state) {
    auto& slot = keys[rng() % keys.size()];
    m.erase(slot);
    std::uint64_t k = rng();
    while (!m.emplace(k, chunk).second) k = rng();
    slot = k;
  }
  state.counters["live"] = static_cast<double>(n);
}

// Keeps every run's time so the ratios can be printed after the table.
class collecting_reporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (!r.error_occurred && r.run_type == Run::RT_Iteration) {
        ns_[r.benchmark_name()] = r.GetAdjustedRealTime();
      }
    }
  }
  double ns(const std::string& name) const {
    auto it = ns_.find(name);
    return it == ns_.end() ? 0.0 : it->second;
  }

 private:
  std::map<std::string, double> ns_;
};

const std::vector<int> fresh_levels = {10, 15, 20, 25, 30};
const std::vector<int> populated_levels = {12, 16, 20, 22};

}  // namespace

int main(int argc, char** argv) {
  for (int l : fresh_levels) {
    benchmark::RegisterBenchmark("fresh", bm_fresh)->Arg(l)->Unit(benchmark::kNanosecond);
  }
  benchmark::RegisterBenchmark("malloc_free_4k", bm_malloc_free)->Unit(benchmark::kNanosecond);
  for (int l : populated_levels) {
    benchmark::RegisterBenchmark("populated", bm_populated)->Arg(l)->Unit(benchmark::kNanosecond);
    benchmark::RegisterBenchmark("map_erase_insert", bm_map)->Arg(l)->Unit(benchmark::kNanosecond);
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  collecting_reporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);

  const double malloc_ns = reporter.ns("malloc_free_4k");
  std::printf("\nworst path (fresh heap): alloc+free of one chunk vs malloc(4096)+free\n");
  std::printf("%6s %12s %10s %12s %10s\n", "log2 n", "ns/op", "ns/level", "malloc ns", "ratio");
  for (int l : fresh_levels) {
    const double ns = reporter.ns("fresh/" + std::to_string(l));
    std::printf("%6d %12.1f %10.2f %12.1f %10.2f\n", l, ns, ns / l, malloc_ns,
                malloc_ns > 0 ? ns / malloc_ns : 0.0);
  }
  std::printf("\nsteady state (50%% full, fragmented): free+alloc vs std::map erase+insert at "
              "the same live count\n");
  std::printf("%6s %12s %12s %10s\n", "log2 n", "buddy ns", "map ns", "ratio");
  for (int l : populated_levels) {
    const double b = reporter.ns("populated/" + std::to_string(l));
    const double m = reporter.ns("map_erase_insert/" + std::to_string(l));
    std::printf("%6d %12.1f %12.1f %10.2f\n", l, b, m, m > 0 ? b / m : 0.0);
  }
  benchmark::Shutdown();
  return 0;
}
