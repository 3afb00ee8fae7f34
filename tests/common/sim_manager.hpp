// SPDX-License-Identifier: MIT
//
// sim_manager.hpp - a memory manager over a real sim backend, for tests.
//
// Small heaps (VRAM in KiB, not GiB) so that a handful of buffers fills a
// domain and every eviction path runs. Helpers fill buffers with seeded
// random bytes and check them through real CPU access.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/sim/sim_backend.hpp"

namespace xbuf::test {

inline constexpr std::uint64_t KiB = 1024;
inline constexpr std::uint64_t MiB = 1024 * KiB;

struct sim_manager_options {
  int devices = 2;
  std::uint64_t vram = 1 * MiB;
  std::uint64_t pinned = 4 * MiB;
  std::uint64_t pageable = 16 * MiB;
  std::uint64_t pinned_limit = 2 * MiB;
  std::chrono::milliseconds promote_interval{0};
  int move_retries = 3;
  double copy_bytes_per_second = 0;
  peer_policy_fn peer_policy;
  std::uint64_t domain_quota = 0;
  std::size_t max_buffers_per_owner = 0;
};

struct sim_manager {
  std::unique_ptr<sim_backend> sim;
  std::unique_ptr<memory_manager> mm;

  explicit sim_manager(const sim_manager_options& o = {}) {
    auto cfg = make_sim_config(o.devices, static_cast<std::size_t>(o.vram));
    cfg.copy_bytes_per_second = o.copy_bytes_per_second;
    auto s = create_sim_backend(cfg);
    if (!s) throw std::runtime_error(s.err().describe());
    sim = std::move(*s);
    manager_config mc;
    mc.device_backend = sim.get();
    mc.pinned_capacity = o.pinned;
    mc.pageable_capacity = o.pageable;
    mc.pinned_limit = o.pinned_limit;
    mc.promote_interval = o.promote_interval;
    mc.move_retries = o.move_retries;
    mc.peer_policy = o.peer_policy;
    mc.domain_quota = o.domain_quota;
    mc.max_buffers_per_owner = o.max_buffers_per_owner;
    auto m = memory_manager::create(mc);
    if (!m) throw std::runtime_error(m.err().describe());
    mm = std::move(*m);
  }
  ~sim_manager() { mm.reset(); }  // before the backend it uses

  domain_stats domain(const std::string& name) {
    for (auto& d : mm->stats().domains) {
      if (d.name == name) return d;
    }
    ADD_FAILURE() << "no domain " << name;
    return {};
  }
  placement where(owner_id o, buffer_id b) {
    auto i = mm->info(o, b);
    EXPECT_TRUE(i) << (i ? "" : i.err().describe());
    return i ? i->where : placement{};
  }
};

inline alloc_request request(std::uint64_t size, std::vector<placement> where) {
  alloc_request r;
  r.size = size;
  r.placements = std::move(where);
  return r;
}

// Waits until the buffer's own kernel work (the clear of fresh VRAM, a move)
// is done, through a CPU read access, which waits for it.
inline void settle(memory_manager& mm, owner_id o, buffer_id b) {
  auto m = mm.begin_cpu_access(o, b, cpu_access_mode::read);
  ASSERT_TRUE(m) << m.err().describe();
  ASSERT_TRUE(mm.end_cpu_access(o, b));
}

// Fills the buffer with bytes from `seed` through CPU write access.
inline void fill(memory_manager& mm, owner_id o, buffer_id b, std::uint32_t seed) {
  auto m = mm.begin_cpu_access(o, b, cpu_access_mode::write);
  ASSERT_TRUE(m) << m.err().describe();
  std::mt19937 rng(seed);
  auto* p = static_cast<std::uint8_t*>(m->data);
  for (std::uint64_t i = 0; i < m->size; ++i) p[i] = static_cast<std::uint8_t>(rng());
  ASSERT_TRUE(mm.end_cpu_access(o, b));
}

// True when the buffer still holds the bytes fill() wrote with `seed`.
inline bool holds(memory_manager& mm, owner_id o, buffer_id b, std::uint32_t seed) {
  auto m = mm.begin_cpu_access(o, b, cpu_access_mode::read);
  if (!m) {
    ADD_FAILURE() << m.err().describe();
    return false;
  }
  std::mt19937 rng(seed);
  const auto* p = static_cast<const std::uint8_t*>(m->data);
  bool same = true;
  for (std::uint64_t i = 0; i < m->size && same; ++i) same = p[i] == static_cast<std::uint8_t>(rng());
  EXPECT_TRUE(mm.end_cpu_access(o, b));
  return same;
}

}  // namespace xbuf::test
