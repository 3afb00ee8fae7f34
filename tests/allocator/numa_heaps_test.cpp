// SPDX-License-Identifier: MIT
// Pageable memory on a machine of several NUMA nodes: one heap per node, the
// capacity split between them, buffers placed near the GPU that uses them,
// evictions landing on the node of the GPU they leave, and a full node
// falling back to another one without moving anyone. A real sim backend
// that simulates two nodes (sim_config::numa_nodes), as it does for a
// two-socket topology XML (tests/p2p/allocator_bridge_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/sim/sim_backend.hpp"

namespace xbuf {
namespace {

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

// Two GPUs of 1 MiB VRAM: sim0 on node 0, sim1 on node 1.
struct two_sockets {
  std::unique_ptr<sim_backend> sim;
  std::unique_ptr<memory_manager> mm;

  explicit two_sockets(std::uint64_t pageable = 8 * MiB, std::vector<int> nodes = {0, 1}) {
    auto cfg = make_sim_config(2, 1 * MiB);
    cfg.numa_nodes = std::move(nodes);
    cfg.devices[0].numa_node = 0;
    cfg.devices[1].numa_node = cfg.numa_nodes.size() > 1 ? cfg.numa_nodes[1] : -1;
    auto s = create_sim_backend(cfg);
    if (!s) throw std::runtime_error(s.err().describe());
    sim = std::move(*s);
    manager_config mc;
    mc.device_backend = sim.get();
    mc.pageable_capacity = pageable;
    mc.promote_interval = std::chrono::milliseconds(0);
    auto m = memory_manager::create(mc);
    if (!m) throw std::runtime_error(m.err().describe());
    mm = std::move(*m);
  }
  ~two_sockets() { mm.reset(); }

  std::optional<domain_stats> domain(const std::string& name) const {
    for (auto& d : mm->stats().domains) {
      if (d.name == name) return d;
    }
    return std::nullopt;
  }
  std::string where(buffer_id id) const {
    auto i = mm->info(1, id);
    EXPECT_TRUE(i) << i.err().describe();
    return i ? to_string(i->where) : "";
  }
  buffer_id alloc(std::uint64_t size, std::vector<placement> where) {
    alloc_request r;
    r.size = size;
    r.placements = std::move(where);
    auto id = mm->allocate(1, r);
    EXPECT_TRUE(id) << id.err().describe();
    return id ? *id : 0;
  }
};

TEST(NumaHeapsTest, OneHeapPerNodeSplittingTheCapacity) {
  two_sockets m(8 * MiB);
  auto n0 = m.domain("pageable-node0");
  auto n1 = m.domain("pageable-node1");
  ASSERT_TRUE(n0 && n1);
  EXPECT_EQ(n0->capacity, 4 * MiB);
  EXPECT_EQ(n1->capacity, 4 * MiB);
  EXPECT_EQ(n1->where, placement::pageable(1));
  EXPECT_FALSE(m.domain("pageable")) << "no node-less pageable domain beside the per-node ones";
  EXPECT_EQ(m.sim->host_numa_nodes(), (std::vector<int>{0, 1}));
}

TEST(NumaHeapsTest, OneNodeKeepsOneUnboundPageableDomain) {
  auto sim = create_sim_backend(make_sim_config(1, 1 * MiB));
  ASSERT_TRUE(sim);
  manager_config mc;
  mc.device_backend = sim->get();
  auto mm = memory_manager::create(mc);
  ASSERT_TRUE(mm);
  int pageable = 0;
  for (const auto& d : (*mm)->stats().domains) {
    if (d.where.kind != memory_kind::host_pageable) continue;
    ++pageable;
    EXPECT_EQ(d.name, "pageable");
    EXPECT_EQ(d.where.node, -1);
  }
  EXPECT_EQ(pageable, 1);
  mm->reset();
}

TEST(NumaHeapsTest, PageableGoesNearTheRequestsGpu) {
  two_sockets m;
  // 2 MiB never fits a 1 MiB GPU: the pageable placement takes it, on the
  // node of the GPU the request names first.
  const auto a = m.alloc(2 * MiB, {placement::vram(1), placement::pageable()});
  const auto b = m.alloc(2 * MiB, {placement::vram(0), placement::pageable()});
  EXPECT_EQ(m.where(a), "pageable-node1");
  EXPECT_EQ(m.where(b), "pageable-node0");
}

TEST(NumaHeapsTest, WithoutAGpuThePageableNodeWithMostRoomGoesFirst) {
  two_sockets m;
  const auto big = m.alloc(2 * MiB, {placement::pageable(0)});
  const auto any = m.alloc(64 * KiB, {placement::pageable()});
  EXPECT_EQ(m.where(big), "pageable-node0");
  EXPECT_EQ(m.where(any), "pageable-node1");
}

TEST(NumaHeapsTest, AnEvictedBufferLandsOnTheNodeOfTheGpuItLeaves) {
  two_sockets m;
  const auto victim = m.alloc(768 * KiB, {placement::vram(1), placement::pageable()});
  ASSERT_EQ(m.where(victim), "vram1");
  const auto evictor = m.alloc(768 * KiB, {placement::vram(1)});
  EXPECT_EQ(m.where(evictor), "vram1");
  EXPECT_EQ(m.where(victim), "pageable-node1");
  EXPECT_EQ(m.domain("pageable-node0")->used, 0u);
}

TEST(NumaHeapsTest, AFullNodeFallsBackToTheOtherWithoutMovingAnyone) {
  two_sockets m(8 * MiB);
  // Node 1 full of a buffer that may live on any node: room is taken on
  // node 0, the resident is not moved there to make room on node 1.
  const auto resident = m.alloc(4 * MiB, {placement::pageable(1), placement::pageable()});
  ASSERT_EQ(m.where(resident), "pageable-node1");
  const auto evictions = m.mm->stats().counters.evictions;
  const auto next = m.alloc(1 * MiB, {placement::vram(1), placement::pageable()});
  // 1 MiB fits the 1 MiB GPU: ask for more than VRAM holds.
  const auto spill = m.alloc(2 * MiB, {placement::vram(1), placement::pageable()});
  EXPECT_EQ(m.where(next), "vram1");
  EXPECT_EQ(m.where(spill), "pageable-node0");
  EXPECT_EQ(m.where(resident), "pageable-node1");
  EXPECT_EQ(m.mm->stats().counters.evictions, evictions);
}

TEST(NumaHeapsTest, AnExplicitNodeIsThatNodeOnly) {
  two_sockets m(8 * MiB);
  (void)m.alloc(4 * MiB, {placement::pageable(1)});
  alloc_request r;
  r.size = 1 * MiB;
  r.placements = {placement::pageable(1)};
  auto more = m.mm->allocate(1, r);
  ASSERT_FALSE(more);
  EXPECT_EQ(more.code(), errc::out_of_memory);
  EXPECT_NE(more.err().message.find("pageable-node1"), std::string::npos) << more.err().message;
  EXPECT_EQ(m.domain("pageable-node0")->used, 0u) << "nothing was moved to the other node";
}

TEST(NumaHeapsTest, ANodeTheMachineLacksIsInvalid) {
  two_sockets m;
  alloc_request r;
  r.size = 4 * KiB;
  r.placements = {placement::vram(0), placement::pageable(7)};
  auto id = m.mm->allocate(1, r);
  ASSERT_FALSE(id);
  EXPECT_EQ(id.code(), errc::invalid_argument);
  EXPECT_NE(id.err().message.find("pageable-node7"), std::string::npos) << id.err().message;
  for (const auto& d : m.mm->stats().domains) EXPECT_EQ(d.buffers, 0u) << d.name;
}

TEST(NumaHeapsTest, ValidateLeavesPageableOnEitherNodeInPlace) {
  two_sockets m(8 * MiB);
  (void)m.alloc(4 * MiB, {placement::pageable(0)});
  const auto b = m.alloc(1 * MiB, {placement::pageable()});
  ASSERT_EQ(m.where(b), "pageable-node1");
  std::vector<buffer_id> ids{b};
  auto report = m.mm->validate(1, ids);
  ASSERT_TRUE(report) << report.err().describe();
  EXPECT_EQ(report->in_place, 1u);
  EXPECT_EQ(report->promoted, 0u);
  EXPECT_EQ(m.where(b), "pageable-node1");
}

// Two threads at once each allocate 2 MiB with {vram1, pageable} (more than
// the GPU holds: pageable, near GPU 1 first) into `m`; where both landed,
// sorted.
std::vector<std::string> race_two_allocations(two_sockets& m) {
  std::atomic<int> ready{0};
  std::vector<buffer_id> got(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      alloc_request r;
      r.size = 2 * MiB;
      r.placements = {placement::vram(1), placement::pageable()};
      auto id = m.mm->allocate(1, r);
      ASSERT_TRUE(id) << id.err().describe();
      got[static_cast<std::size_t>(t)] = *id;
    });
  }
  for (auto& th : threads) th.join();
  std::vector<std::string> where{m.where(got[0]), m.where(got[1])};
  std::sort(where.begin(), where.end());
  return where;
}

// Node 1 has 1 MiB left: neither fits there, both land on node 0; neither
// fails and no node passes its capacity.
TEST(NumaHeapsTest, TwoRequestsRacingForANodesLastRoomBothLand) {
  for (int round = 0; round < 50; ++round) {
    two_sockets m(8 * MiB);
    (void)m.alloc(3 * MiB, {placement::pageable(1)});
    EXPECT_EQ(race_two_allocations(m), (std::vector<std::string>{"pageable-node0", "pageable-node0"}))
        << "2 MiB does not fit node 1's last 1 MiB: both go to node 0 (round " << round << ")";
    EXPECT_LE(m.domain("pageable-node1")->used, 4 * MiB);
    EXPECT_LE(m.domain("pageable-node0")->used, 4 * MiB);
  }
}

// Node 1 has room for exactly one of them: one gets it, the other lands on node 0.
TEST(NumaHeapsTest, TwoRequestsRacingForTheLastFitOnANode) {
  for (int round = 0; round < 50; ++round) {
    two_sockets m(8 * MiB);
    (void)m.alloc(2 * MiB, {placement::pageable(1)});
    EXPECT_EQ(race_two_allocations(m), (std::vector<std::string>{"pageable-node0", "pageable-node1"}))
        << "node 1 has room for one of them (round " << round << ")";
    EXPECT_EQ(m.domain("pageable-node1")->used, 4 * MiB);
    EXPECT_EQ(m.domain("pageable-node0")->used, 2 * MiB);
  }
}

TEST(NumaHeapsTest, TheSimChecksTheNodesItSimulates) {
  auto sim = create_sim_backend([] {
    auto c = make_sim_config(1, 1 * MiB);
    c.numa_nodes = {0, 1};
    return c;
  }());
  ASSERT_TRUE(sim);
  auto on1 = (*sim)->allocate_host(4096, false, 1);
  ASSERT_TRUE(on1) << on1.err().describe();
  EXPECT_EQ((*on1)->numa_node, -1) << "a simulated node is not bound on this machine";
  auto on5 = (*sim)->allocate_host(4096, false, 5);
  ASSERT_FALSE(on5);
  EXPECT_EQ(on5.code(), errc::invalid_argument);
  EXPECT_NE(on5.err().message.find("NUMA node 5"), std::string::npos) << on5.err().message;
  EXPECT_NE(on5.err().message.find("0, 1"), std::string::npos) << on5.err().message;

  for (auto [nodes, device_node, says] :
       {std::tuple{std::vector<int>{0, 0}, -1, "listed twice"}, std::tuple{std::vector<int>{-2}, -1, "negative"},
        std::tuple{std::vector<int>{0, 1}, 3, "numa_nodes does not list"}}) {
    auto c = make_sim_config(1, 1 * MiB);
    c.numa_nodes = nodes;
    c.devices[0].numa_node = device_node;
    auto bad = create_sim_backend(c);
    ASSERT_FALSE(bad) << says;
    EXPECT_EQ(bad.code(), errc::invalid_argument);
    EXPECT_NE(bad.err().message.find(says), std::string::npos) << bad.err().message;
  }
}

}  // namespace
}  // namespace xbuf
