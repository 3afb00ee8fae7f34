// SPDX-License-Identifier: MIT
//
// policy_bench - bytes the memory manager's eviction moves on ML-shaped
// traces, against Belady's MIN on the same trace (issue 11, policy rows).
//
// Each trace (bench/trace/generate.hpp) is replayed through a real
// memory_manager over the sim backend: alloc = allocate() preferring VRAM,
// use = validate() of that one buffer (promotes it into VRAM; the anti
// ping-pong interval is 0, so every use of an evicted buffer promotes it),
// free = free(). The subject is the manager's bytes_moved counter (every
// eviction and promotion adds the buffer's size); the limit is the size-aware
// Belady simulator on the same trace and capacity (bench/trace/simulate.hpp
// says what it counts and why it is a heuristic). Repetitions are the VRAM
// sizes the issue names (1/3 to 1/4 of the trace's peak), or for the tenants
// trace the size of the cycling job (1.25x to 2x VRAM).
//
// stderr also shows plain LRU (simulated) on the same trace, which is what
// the manager moved before the policy of allocator/eviction_policy.hpp, and
// anything the replay could not do as the simulators do (a use left in host
// memory, an allocation that spilled to host).
//
//   policy_bench [--short] [--write-traces DIR]
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/sim/sim_backend.hpp"
#include "bench/common/report.hpp"
#include "bench/trace/generate.hpp"
#include "bench/trace/simulate.hpp"

namespace {

using namespace xbuf;
namespace tr = xbuf::trace;

struct replay_result {
  std::uint64_t bytes_moved = 0, evictions = 0, promotions = 0;
  std::size_t uses_left_in_host = 0;  // validate could not promote
  std::size_t allocs_spilled = 0;     // allocate did not land in VRAM
  std::string error;
};

replay_result replay(const tr::trace& t, std::uint64_t vram) {
  replay_result out;
  auto sim = create_sim_backend(make_sim_config(1, static_cast<std::size_t>(vram)));
  if (!sim) {
    out.error = sim.err().describe();
    return out;
  }
  {
    manager_config mc;
    mc.device_backend = sim->get();
    mc.vram_capacity = {vram};
    mc.pageable_capacity = 2 * tr::peak_bytes(t) + (64ull << 20);
    mc.promote_interval = std::chrono::steady_clock::duration::zero();
    auto mm = memory_manager::create(mc);
    if (!mm) {
      out.error = mm.err().describe();
      return out;
    }
    auto& m = **mm;
    std::unordered_map<std::uint64_t, buffer_id> ids;
    alloc_request req;
    req.placements = {placement::vram(0), placement::pageable()};
    for (const auto& e : t.events) {
      switch (e.kind) {
        case tr::op::alloc: {
          req.size = e.size;
          auto id = m.allocate(e.owner, req);
          if (!id) {
            out.error = id.err().describe();
            return out;
          }
          ids[e.buffer] = *id;
          auto info = m.info(e.owner, *id);
          if (!info || info->where != placement::vram(0)) ++out.allocs_spilled;
          break;
        }
        case tr::op::use: {
          const buffer_id one[] = {ids.at(e.buffer)};
          auto v = m.validate(e.owner, one);
          if (!v) {
            out.error = v.err().describe();
            return out;
          }
          out.uses_left_in_host += v->no_room + v->deferred;
          break;
        }
        case tr::op::free:
          (void)m.free(e.owner, ids.at(e.buffer));
          ids.erase(e.buffer);
          break;
      }
    }
    const auto c = m.stats().counters;
    out.bytes_moved = c.bytes_moved;
    out.evictions = c.evictions;
    out.promotions = c.promotions;
  }
  return out;
}

// The manager's policy (allocator/eviction_policy.hpp) replayed offline with
// simulate()'s cost model: what the policy alone moves, without the heap's
// fragmentation or the manager's way of finding room.
std::uint64_t simulate_policy(const tr::trace& t, std::uint64_t capacity) {
  struct entry {
    reuse_history h;
    std::uint64_t size = 0;
    bool resident = false;
  };
  std::unordered_map<std::uint64_t, entry> all;
  std::uint64_t free_bytes = capacity, moved = 0, tick = 0;
  auto make_room = [&](std::uint64_t need, std::uint64_t self) {
    while (free_bytes < need) {
      entry* victim = nullptr;
      std::uint64_t best = 0;
      for (auto& [id, e] : all) {
        if (!e.resident || id == self) continue;
        const auto score = eviction_score(e.h, tick + 1);
        if (victim == nullptr || score > best || (score == best && e.h.ticks[0] < victim->h.ticks[0])) {
          victim = &e;
          best = score;
        }
      }
      if (victim == nullptr) return;
      victim->resident = false;
      free_bytes += tr::block_bytes(victim->size);
      moved += victim->size;
    }
  };
  for (const auto& e : t.events) {
    auto& b = all[e.buffer];
    if (e.kind == tr::op::free) {
      if (b.resident) free_bytes += tr::block_bytes(b.size);
      all.erase(e.buffer);
      continue;
    }
    b.size = e.size;
    if (!b.resident) {
      make_room(tr::block_bytes(e.size), e.buffer);
      if (e.kind == tr::op::use) moved += e.size;
      b.resident = true;
      free_bytes -= tr::block_bytes(e.size);
    }
    record_use(b.h, ++tick);
  }
  return moved;
}

struct config {
  std::string label;
  tr::trace t;
  std::uint64_t vram = 0;
};

// One figure: every config a repetition. Returns false when one could not run.
bool measure(const std::string& bench, const std::string& what, bench::target goal, std::vector<config> cs,
             const char* write_dir) {
  bench::figure f{bench, "bytes", "Belady MIN (size-aware) on the same trace", goal, {}, {}};
  std::vector<double> lru_ratios;
  std::fprintf(stderr, "%s:\n", what.c_str());
  for (auto& c : cs) {
    if (auto bad = tr::check(c.t); !bad.empty()) {
      std::fprintf(stderr, "policy_bench: %s trace: %s\n", c.label.c_str(), bad.c_str());
      return false;
    }
    if (write_dir != nullptr) {
      std::ofstream file(std::string(write_dir) + "/" + bench + "_" + std::to_string(f.values.size()) + ".trace");
      tr::write_text(file, c.t);
    }
    const auto s = tr::summarize(c.t);
    const auto min = tr::simulate(c.t, c.vram, tr::sim_policy::min);
    const auto lru = tr::simulate(c.t, c.vram, tr::sim_policy::lru);
    if (!min.error.empty() || !lru.error.empty()) {
      std::fprintf(stderr, "policy_bench: %s: %s\n", c.label.c_str(), (min.error + lru.error).c_str());
      return false;
    }
    const auto got = replay(c.t, c.vram);
    const double policy_alone = static_cast<double>(simulate_policy(c.t, c.vram));
    if (!got.error.empty()) {
      std::fprintf(stderr, "policy_bench: %s: replay: %s\n", c.label.c_str(), got.error.c_str());
      return false;
    }
    f.add(static_cast<double>(got.bytes_moved), static_cast<double>(min.moved()));
    const double mn = static_cast<double>(min.moved());
    lru_ratios.push_back(mn != 0 ? static_cast<double>(lru.moved()) / mn : 0);
    std::fprintf(stderr,
                 "  %-26s %zu events, %zu buffers, peak %.1f MiB, vram %.1f MiB: manager %.1f MiB (%llu evictions, "
                 "%llu promotions), MIN %.1f MiB, LRU %.1f MiB; policy simulated/MIN %.3f, manager/MIN %.3f, LRU/MIN %.3f%s\n",
                 c.label.c_str(), s.events, s.buffers, static_cast<double>(s.peak) / 1048576.0,
                 static_cast<double>(c.vram) / 1048576.0, static_cast<double>(got.bytes_moved) / 1048576.0,
                 static_cast<unsigned long long>(got.evictions), static_cast<unsigned long long>(got.promotions),
                 mn / 1048576.0, static_cast<double>(lru.moved()) / 1048576.0, policy_alone / mn,
                 mn != 0 ? static_cast<double>(got.bytes_moved) / mn : 0, lru_ratios.back(),
                 got.uses_left_in_host + got.allocs_spilled != 0
                     ? (", " + std::to_string(got.uses_left_in_host) + " uses left in host, " +
                        std::to_string(got.allocs_spilled) + " allocations spilled")
                           .c_str()
                     : "");
  }
  const auto l = bench::spread_of(lru_ratios);
  std::fprintf(stderr, "  plain LRU on the same traces: ratio %.3g (min %.3g, max %.3g)\n", l.median, l.min, l.max);
  bench::report(f, "\"lru_ratio\":" + bench::detail::json_number(l.median) +
                       ",\"lru_ratio_max\":" + bench::detail::json_number(l.max));
  return true;
}

std::uint64_t fraction_of(std::uint64_t peak, double frac) {
  const auto v = static_cast<std::uint64_t>(static_cast<double>(peak) * frac);
  return (v + 65535) / 65536 * 65536;
}

int run(int argc, char** argv) {
  const bool quick = bench::short_mode(argc, argv);
  const char* write_dir = nullptr;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--write-traces") == 0) write_dir = argv[i + 1];
  }
  const double fractions[] = {1.0 / 3, 2.0 / 7, 1.0 / 4};
  bool ok = true;
  {
    tr::training_shape shape;
    if (quick) shape.steps = 4;
    std::vector<config> cs;
    for (double fr : fractions) {
      auto t = tr::training(shape);
      (void)tr::check(t);
      const auto vram = fraction_of(tr::peak_bytes(t), fr);
      cs.push_back({"vram = peak * " + bench::detail::json_number(fr), std::move(t), vram});
    }
    ok = measure("policy_training_bytes_moved", "training loop (weights, activations, optimizer state)",
                 bench::at_most(1.15), std::move(cs), write_dir) && ok;
  }
  {
    tr::inference_shape shape;
    if (quick) shape.decode_steps = 60;
    std::vector<config> cs;
    for (double fr : fractions) {
      auto t = tr::inference(shape);
      (void)tr::check(t);
      const auto vram = fraction_of(tr::peak_bytes(t), fr);
      cs.push_back({"vram = peak * " + bench::detail::json_number(fr), std::move(t), vram});
    }
    ok = measure("policy_inference_bytes_moved", "inference with a growing paged KV cache", bench::at_most(1.15),
                 std::move(cs), write_dir) && ok;
  }
  {
    std::vector<config> cs;
    for (double factor : {1.25, 1.5, 2.0}) {
      tr::tenants_shape shape;
      shape.cycle_factor = factor;
      if (quick) shape.kernels = 4000;
      cs.push_back({"cycling job = vram * " + bench::detail::json_number(factor), tr::tenants(shape),
                    shape.vram_bytes});
    }
    ok = measure("policy_tenants_bytes_moved", "3 tenants, one cycling through more than VRAM",
                 bench::at_most(1.25), std::move(cs), write_dir) && ok;
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
