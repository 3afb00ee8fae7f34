// SPDX-License-Identifier: MIT
//
// move_bench - how close a memory-manager move runs to the copy itself
// (issue 11, "Speed to the limits", the move row).
//
// Figures (bench/common/report.hpp: one JSON line each, ratio = subject / limit):
//   move_evict_promote_1m, move_evict_promote_16m
//       Two buffers of S bytes on a sim GPU whose VRAM holds one. Each round
//       validate()s the one in pageable memory: the manager evicts the other
//       (VRAM -> pageable) and promotes it (pageable -> VRAM), then a CPU
//       access waits for the move. 2 S bytes moved per round, in GB/s,
//       against a warm single-thread memcpy of the same 2 S bytes between two
//       memfd mappings already faulted in, the repetitions interleaved:
//       the bounce's own two copies (VRAM slot -> a spare host buffer, the
//       other host buffer -> the slot) done by memcpy between three warm
//       buffers, so the limit has the bounce's cache footprint (3 S).
//       Target: >= 0.85.
//   backend_copy_64k
//       sim backend::copy() of 64 KiB host -> VRAM plus the wait for its fence,
//       against memcpy of the same 64 KiB between the same mappings. Target:
//       >= 0.85.
//
// Each figure takes 31 short repetitions (a few milliseconds each), the
// subject and its limit back to back, which one goes first alternating:
// on a shared machine a preempted repetition is an outlier the median
// ignores.
// --short: a few repetitions, for CI's proof that the bench still runs.
// --only <figure>: one figure (for profiling).
// The buffers' contents are checked at the end: a fast move that loses
// bytes is not a figure.
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/sim/sim_backend.hpp"
#include "bench/common/report.hpp"

namespace {

using namespace xbuf;
namespace xb = xbuf::bench;

constexpr std::size_t KiB = std::size_t{1} << 10;
constexpr std::size_t MiB = std::size_t{1} << 20;

// The limit's memory: a VRAM-sized slot and two host buffers, every page
// touched, so its memcpy runs warm.
struct warm_three {
  memory_block_ptr slot, a, b;
};

memory_block_ptr warm_block(backend& be, std::size_t size, int value) {
  auto blk = be.allocate_host(size, false);
  if (!blk) {
    std::fprintf(stderr, "move_bench: allocate_host failed: %s\n", blk.err().describe().c_str());
    std::exit(1);
  }
  std::memset((*blk)->host_ptr, value, size);
  return *blk;
}

double gbps(double bytes, double seconds) { return bytes / seconds / 1e9; }

bool bounce_figure(backend& be, std::size_t size, const std::string& name, bool quick) {
  manager_config mc;
  mc.device_backend = &be;
  mc.vram_capacity = {size};  // holds one of the two buffers
  mc.promote_interval = std::chrono::steady_clock::duration::zero();
  auto mm = memory_manager::create(mc);
  if (!mm) {
    std::fprintf(stderr, "move_bench: %s\n", mm.err().describe().c_str());
    return false;
  }
  auto& m = **mm;
  alloc_request req;
  req.size = size;
  req.cpu_access = true;
  req.placements = {placement::vram(0), placement::pageable()};
  buffer_id ids[2] = {};
  for (int i = 0; i < 2; ++i) {
    auto id = m.allocate(1, req);
    if (!id) {
      std::fprintf(stderr, "move_bench: %s\n", id.err().describe().c_str());
      return false;
    }
    ids[i] = *id;
    auto c = m.begin_cpu_access(1, ids[i], cpu_access_mode::write);
    if (!c) std::abort();
    std::memset(c->data, 0x10 + i, size);
    (void)m.end_cpu_access(1, ids[i]);
  }
  auto in_vram = [&](buffer_id id) {
    auto i = m.info(1, id);
    return i && i->where.kind == memory_kind::device;
  };
  // One round: the buffer in pageable memory comes in, the other goes out.
  auto round = [&] {
    const buffer_id out = in_vram(ids[0]) ? ids[1] : ids[0];
    const buffer_id want[] = {out};
    auto r = m.validate(1, want);
    if (!r || r->promoted != 1) {
      std::fprintf(stderr, "move_bench: validate did not promote: %s\n",
                   r ? "no room" : r.err().describe().c_str());
      std::abort();
    }
    auto c = m.begin_cpu_access(1, out, cpu_access_mode::read);  // waits for the move
    if (!c) std::abort();
    (void)m.end_cpu_access(1, out);
  };
  // The limit does the bounce's copies with memcpy, between three warm
  // buffers in the bounce's pattern (slot -> the spare host buffer, the
  // other host buffer -> slot, roles swapped each round): a perfect mover's
  // cost, cache footprint included.
  warm_three warm{warm_block(be, size, 0x5a), warm_block(be, size, 0xa5), warm_block(be, size, 0x3c)};
  // Short repetitions, many of them: on a shared machine a repetition that
  // a neighbour preempted is an outlier the median ignores.
  const int rounds = static_cast<int>(std::max<std::size_t>(4, (quick ? 16 : 64) * MiB / (2 * size)));
  const int reps = quick ? 5 : 31;
  for (int i = 0; i < rounds; ++i) round();  // fill pools, fault in VRAM
  xb::figure f{name, "GB/s", "warm single-thread memcpy of the same bytes (the bounce's two copies)",
               xb::at_least(0.85), {}, {}};
  const double bytes = 2.0 * static_cast<double>(size) * rounds;
  auto moves = [&] {
    for (int i = 0; i < rounds; ++i) round();
  };
  auto copies = [&] {
    for (int i = 0; i < rounds; ++i) {
      std::memcpy(warm.a->host_ptr, warm.slot->host_ptr, size);
      std::memcpy(warm.slot->host_ptr, warm.b->host_ptr, size);
      std::swap(warm.a, warm.b);
    }
  };
  for (int rep = 0; rep < reps; ++rep) {
    // Which goes first alternates, so neither always runs on a warmer cache.
    double t_move = 0, t_copy = 0;
    if (rep % 2 == 0) {
      t_move = xb::seconds_of(moves);
      t_copy = xb::seconds_of(copies);
    } else {
      t_copy = xb::seconds_of(copies);
      t_move = xb::seconds_of(moves);
    }
    f.add(gbps(bytes, t_move), gbps(bytes, t_copy));
  }
  // Bytes survive every move.
  for (int i = 0; i < 2; ++i) {
    auto c = m.begin_cpu_access(1, ids[i], cpu_access_mode::read);
    if (!c) std::abort();
    const auto* p = static_cast<const unsigned char*>(c->data);
    for (std::size_t k = 0; k < size; ++k) {
      if (p[k] != 0x10 + i) {
        std::fprintf(stderr, "move_bench: %s: buffer %d byte %zu is %u after the moves\n", name.c_str(), i, k, p[k]);
        return false;
      }
    }
    (void)m.end_cpu_access(1, ids[i]);
  }
  const auto s = m.stats();
  xb::report(f, "\"size\":" + std::to_string(size) + ",\"rounds\":" + std::to_string(rounds) +
                    ",\"moves\":" + std::to_string(s.counters.moves));
  return true;
}

bool backend_copy_figure(backend& be, std::size_t size, const std::string& name, bool quick) {
  auto host = be.allocate_host(size, false);
  auto dev = be.allocate_device(0, size);
  if (!host || !dev) {
    std::fprintf(stderr, "move_bench: allocation failed\n");
    return false;
  }
  std::memset((*host)->host_ptr, 1, size);
  std::memset((*dev)->host_ptr, 2, size);
  const int n = quick ? 256 : 1024;
  const int reps = quick ? 5 : 31;
  xb::figure f{name, "GB/s", "memcpy of the same bytes between the same mappings", xb::at_least(0.85), {}, {}};
  const double bytes = static_cast<double>(size) * n;
  auto copies = [&] {
    for (int i = 0; i < n; ++i) {
      auto c = be.copy({*dev, 0, size}, {*host, 0, size});
      if (!c || !(*c)->wait()) std::abort();
    }
  };
  auto raw = [&] {
    for (int i = 0; i < n; ++i) std::memcpy((*dev)->host_ptr, (*host)->host_ptr, size);
  };
  for (int rep = 0; rep < reps; ++rep) {
    double t_copy = 0, t_raw = 0;
    if (rep % 2 == 0) {
      t_copy = xb::seconds_of(copies);
      t_raw = xb::seconds_of(raw);
    } else {
      t_raw = xb::seconds_of(raw);
      t_copy = xb::seconds_of(copies);
    }
    f.add(gbps(bytes, t_copy), gbps(bytes, t_raw));
  }
  xb::report(f, "\"size\":" + std::to_string(size));
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = xb::short_mode(argc, argv);
  // --only <figure>: that figure alone (profiling).
  std::string only;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--only") == 0) only = argv[i + 1];
  }
  auto wanted = [&](const char* name) { return only.empty() || only == name; };
  auto sim = create_sim_backend(make_sim_config(1, 64 * MiB));
  if (!sim) {
    std::fprintf(stderr, "move_bench: %s\n", sim.err().describe().c_str());
    return 1;
  }
  bool ok = true;
  if (wanted("move_evict_promote_1m")) ok = bounce_figure(**sim, 1 * MiB, "move_evict_promote_1m", quick) && ok;
  if (wanted("move_evict_promote_16m")) ok = bounce_figure(**sim, 16 * MiB, "move_evict_promote_16m", quick) && ok;
  if (wanted("backend_copy_64k")) ok = backend_copy_figure(**sim, 64 * KiB, "backend_copy_64k", quick) && ok;
  return ok ? 0 : 1;
}
