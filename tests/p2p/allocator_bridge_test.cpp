// SPDX-License-Identifier: MIT
// Sim machines built from real topologies, and the memory manager asking the
// p2p rules before it hands a device another device's VRAM address.
#include "p2p/allocator_bridge.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "p2p/hwloc_loader.hpp"

namespace xbuf::p2p {
namespace {

constexpr std::size_t MiB = 1 << 20;

std::shared_ptr<const topology> load(const std::string& name) {
  auto t = load_topology_xml(std::string(XBUF_TEST_DATA_DIR) + "/topologies/" + name);
  if (!t) throw std::runtime_error(t.err().describe());
  return std::make_shared<const topology>(std::move(*t));
}

struct machine {
  std::shared_ptr<const topology> topo;
  std::unique_ptr<sim_backend> sim;
  std::unique_ptr<memory_manager> mm;

  explicit machine(const std::string& xml) : topo(load(xml)) {
    auto cfg = sim_config_from_topology(*topo, 1 * MiB);
    if (!cfg) throw std::runtime_error(cfg.err().describe());
    auto s = create_sim_backend(*cfg);
    if (!s) throw std::runtime_error(s.err().describe());
    sim = std::move(*s);
    manager_config mc;
    mc.device_backend = sim.get();
    mc.peer_policy = make_peer_policy(topo, *sim);
    auto m = memory_manager::create(mc);
    if (!m) throw std::runtime_error(m.err().describe());
    mm = std::move(*m);
  }
  ~machine() { mm.reset(); }

  // Device `importer` maps a buffer that lives in `exporter`'s VRAM.
  mapping map_across(int importer, int exporter) {
    alloc_request r;
    r.size = 64 * 1024;
    r.placements = {placement::vram(exporter), placement::pageable()};
    auto id = mm->allocate(1, r);
    EXPECT_TRUE(id) << id.err().describe();
    attach_request a;
    a.device = importer;
    a.mode = attach_mode::dynamic;
    a.peer_capable = true;
    a.move_notify = [](const move_notice&) {};
    auto att = mm->attach(1, *id, a);
    EXPECT_TRUE(att) << att.err().describe();
    auto m = mm->map(1, *att);
    EXPECT_TRUE(m) << m.err().describe();
    return m ? *m : mapping{};
  }
};

TEST(AllocatorBridgeTest, SimDevicesAreTheGpusOfTheTopology) {
  auto topo = load("nvidiaDGX2.xml");
  auto cfg = sim_config_from_topology(*topo, 4 * MiB);
  ASSERT_TRUE(cfg) << cfg.err().describe();
  ASSERT_EQ(cfg->devices.size(), 16u);
  EXPECT_EQ(cfg->devices[0].pci_address, "0000:34:00.0");
  EXPECT_EQ(cfg->devices[0].numa_node, 0);
  EXPECT_EQ(cfg->devices[15].pci_address, "0000:e7:00.0");
  EXPECT_EQ(cfg->devices[15].numa_node, 1);
  EXPECT_NE(cfg->devices[0].name.find("V100"), std::string::npos) << cfg->devices[0].name;
  EXPECT_EQ(cfg->devices[3].vram_bytes, 4 * MiB);
}

TEST(AllocatorBridgeTest, TheTopologysNumaNodesAreSimulated) {
  EXPECT_EQ(load("nvidiaDGX2.xml")->numa_nodes(), (std::vector<unsigned>{0, 1}));
  EXPECT_EQ(load("96em64t-4n4d3ca2co-pci.xml")->numa_nodes(), (std::vector<unsigned>{0, 1, 2, 3}));
  auto cfg = sim_config_from_topology(*load("nvidiaDGX2.xml"), 4 * MiB);
  ASSERT_TRUE(cfg) << cfg.err().describe();
  EXPECT_EQ(cfg->numa_nodes, (std::vector<int>{0, 1}));
}

// On the DGX-2 (two sockets, eight V100s below each), a buffer evicted from
// a GPU of socket 1 lands in socket 1's pageable memory.
TEST(AllocatorBridgeTest, EvictionFromAGpuLandsOnItsSocketsNode) {
  machine m("nvidiaDGX2.xml");
  int far = -1;
  for (std::size_t i = 0; i < m.sim->devices().size(); ++i) {
    if (m.sim->devices()[i].numa_node == 1) far = static_cast<int>(i);
  }
  ASSERT_GE(far, 0);
  alloc_request r;
  r.size = 768 * 1024;
  r.placements = {placement::vram(far), placement::pageable()};
  auto victim = m.mm->allocate(1, r);
  ASSERT_TRUE(victim) << victim.err().describe();
  r.placements = {placement::vram(far)};
  auto evictor = m.mm->allocate(1, r);
  ASSERT_TRUE(evictor) << evictor.err().describe();
  auto info = m.mm->info(1, *victim);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->where, placement::pageable(1));
  std::vector<std::string> names;
  for (const auto& d : m.mm->stats().domains) names.push_back(d.name);
  EXPECT_NE(std::find(names.begin(), names.end(), "pageable-node0"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "pageable-node1"), names.end());
}

TEST(AllocatorBridgeTest, TopologyWithoutGpusIsNoDevice) {
  auto topo = load("devel09-pci.xml");
  auto cfg = sim_config_from_topology(*topo, MiB);
  ASSERT_FALSE(cfg);
  EXPECT_EQ(cfg.code(), errc::no_device);
  EXPECT_NE(cfg.err().message.find("no GPU"), std::string::npos) << cfg.err().message;
  EXPECT_EQ(sim_config_from_topology(*load("nvidiaDGX2.xml"), 0).code(), errc::invalid_argument);
}

TEST(AllocatorBridgeTest, GpusOnOneSwitchGetAPeerAddress) {
  machine m("nvidiaDGX2.xml");
  auto map = m.map_across(1, 0);
  EXPECT_TRUE(map.peer) << map.reason;
  EXPECT_EQ(map.where, placement::vram(0));
}

TEST(AllocatorBridgeTest, GpusWhosePcieCannotCarryPeerTrafficGetPinnedHostMemory) {
  // Three Tesla M2070s, each on its own root port of a Westmere-era host
  // bridge that is not on the kernel's allow-list, and no NVLink.
  machine m("24em64t-2n6c2t-pci.xml");
  ASSERT_GE(m.sim->devices().size(), 2u);
  auto map = m.map_across(1, 0);
  EXPECT_FALSE(map.peer);
  EXPECT_EQ(map.where, placement::pinned()) << map.reason;
  EXPECT_FALSE(map.reason.empty());
}

TEST(AllocatorBridgeTest, NvlinkPairsOnPowerGetAPeerAddressWherePcieCannot) {
  machine m("power8gpudistances.xml");
  ASSERT_GE(m.sim->devices().size(), 2u);
  auto map = m.map_across(1, 0);
  EXPECT_TRUE(map.peer) << map.reason;
}

}  // namespace
}  // namespace xbuf::p2p
