// SPDX-License-Identifier: MIT
//
// The rules on real machines' hwloc XML (tests/data/topologies, sources in
// SOURCES.md there): the path levels and verdicts that follow from each tree.
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "p2p/hwloc_loader.hpp"
#include "p2p/peer_policy.hpp"
#include "p2p/rules.hpp"

namespace xbuf::p2p {
namespace {

std::string data(const char* name) { return std::string(XBUF_TEST_DATA_DIR) + "/topologies/" + name; }

topology load(const char* name) {
  auto t = load_topology_xml(data(name));
  EXPECT_TRUE(t) << (t ? "" : t.err().describe());
  return t ? std::move(*t) : topology{};
}

int at(const topology& t, const char* address) {
  auto a = pci_address::parse(address);
  EXPECT_TRUE(a);
  auto i = t.find(*a);
  EXPECT_TRUE(i.has_value()) << address;
  return i.value_or(-1);
}

struct pair_facts {
  std::string path, pcie;
  p2pdma_verdict verdict;
  int hops;
};

pair_facts facts(const topology& t, const char* a, const char* b) {
  const int x = at(t, a), y = at(t, b);
  if (x < 0 || y < 0) return {"", "", p2pdma_verdict::unknown, -99};
  const p2pdma_result r = p2pdma(t, x, y);
  return {device_path(t, x, y).label(), pcie_path(t, x, y).label(), r.verdict, r.hops};
}

std::size_t count_kind(const topology& t, device_kind k) {
  std::size_t n = 0;
  for (int i : t.dma_devices()) n += t.node(i).kind_of_device == k ? 1 : 0;
  return n;
}

// --- NVIDIA DGX-2: two-level PLX switches, 4 host bridges, 2 sockets, NVSwitch.

TEST(RealTopologyTest, Dgx2HasSixteenV100sAndTwelveNvSwitches) {
  const topology t = load("nvidiaDGX2.xml");
  EXPECT_EQ(count_kind(t, device_kind::gpu), 16u);
  std::size_t switches = 0;
  for (const auto& n : t.nodes()) switches += n.kind_of_device == device_kind::nvswitch ? 1 : 0;
  EXPECT_EQ(switches, 12u);
  EXPECT_EQ(t.cpu().vendor, "GenuineIntel");
}

TEST(RealTopologyTest, Dgx2GpusOnOneSmallSwitchAreBusAddrDistance4Pix) {
  const auto f = facts(load("nvidiaDGX2.xml"), "0000:34:00.0", "0000:36:00.0");
  EXPECT_EQ(f.pcie, "PIX");
  EXPECT_EQ(f.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(f.hops, 4);
}

TEST(RealTopologyTest, Dgx2GpusUnderOneBigSwitchAreBusAddrDistance8Pxb) {
  const auto f = facts(load("nvidiaDGX2.xml"), "0000:34:00.0", "0000:39:00.0");
  EXPECT_EQ(f.pcie, "PXB");
  EXPECT_EQ(f.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(f.hops, 8);
}

TEST(RealTopologyTest, Dgx2GpusOnTwoHostBridgesOfOneSocketGoThroughSkylakeRootPorts) {
  const topology t = load("nvidiaDGX2.xml");
  const auto f = facts(t, "0000:34:00.0", "0000:57:00.0");
  EXPECT_EQ(f.pcie, "NODE");
  EXPECT_EQ(f.verdict, p2pdma_verdict::thru_host_bridge);
  EXPECT_EQ(f.hops, 12);
  const p2pdma_result r = p2pdma(t, at(t, "0000:34:00.0"), at(t, "0000:57:00.0"));
  EXPECT_NE(r.reason.find("8086:2030"), std::string::npos) << r.reason;
}

TEST(RealTopologyTest, Dgx2CrossSocketPairIsSysButStillThruHostBridge) {
  const auto f = facts(load("nvidiaDGX2.xml"), "0000:34:00.0", "0000:e7:00.0");
  EXPECT_EQ(f.pcie, "SYS");
  EXPECT_EQ(f.verdict, p2pdma_verdict::thru_host_bridge) << "the kernel ignores sockets";
  EXPECT_EQ(f.hops, 12);
}

TEST(RealTopologyTest, Dgx2EveryGpuPairIsNv6ThroughNvSwitches) {
  const topology t = load("nvidiaDGX2.xml");
  std::vector<int> gpus;
  for (int i : t.dma_devices()) {
    if (t.node(i).kind_of_device == device_kind::gpu) gpus.push_back(i);
  }
  for (int a : gpus) {
    for (int b : gpus) {
      if (a != b) {
        EXPECT_EQ(device_path(t, a, b).label(), "NV6");
      }
    }
  }
}

TEST(RealTopologyTest, Dgx2VerdictsAssumeNoAcsRedirectBecauseXmlHasNone) {
  const topology t = load("nvidiaDGX2.xml");
  const p2pdma_result r = p2pdma(t, at(t, "0000:34:00.0"), at(t, "0000:36:00.0"));
  EXPECT_TRUE(r.acs_assumed);
  for (const auto& n : t.nodes()) {
    if (n.kind != node_kind::host_bridge) {
      EXPECT_EQ(n.acs, acs_state::unknown);
    }
  }
}

// --- Dell XE8640 (ipa20): SPR with SNC, each H100 shares a PEX890xx with a NIC.

TEST(RealTopologyTest, Ipa20GpuAndNicOnOneSwitchArePixBusAddr) {
  const auto f = facts(load("flux-core_ipa20.xml"), "0000:4e:00.0", "0000:4d:00.0");
  EXPECT_EQ(f.pcie, "PIX");
  EXPECT_EQ(f.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(f.hops, 4);
}

TEST(RealTopologyTest, Ipa20GpusAreNv6AndSysAcrossSncNodesWithUnknownHostBridgeCheck) {
  const auto f = facts(load("flux-core_ipa20.xml"), "0000:4e:00.0", "0000:5f:00.0");
  EXPECT_EQ(f.path, "NV6");
  EXPECT_EQ(f.pcie, "SYS") << "each SNC domain is its own NUMA node";
  EXPECT_EQ(f.verdict, p2pdma_verdict::unknown) << "root-bus 00.0 devices were filtered out";
}

TEST(RealTopologyTest, Ipa20QatEndpointsOnTheirOwnRootBusesAreAllowListed) {
  const auto f = facts(load("flux-core_ipa20.xml"), "0000:6b:00.0", "0000:e8:00.0");
  EXPECT_EQ(f.verdict, p2pdma_verdict::thru_host_bridge);
  EXPECT_EQ(f.hops, 2);
  const auto g = facts(load("flux-core_ipa20.xml"), "0000:6b:00.0", "0000:6d:00.0");
  EXPECT_EQ(g.verdict, p2pdma_verdict::not_supported) << "8086:2710 is not on the list";
}

// --- HP SL390s (two sockets, several host bridges, GPUs on Root Ports).

TEST(RealTopologyTest, TwoSocketMachineGpusArePhbOnOneSocketAndSysAcross) {
  const topology t = load("24em64t-2n6c2t-pci.xml");
  EXPECT_EQ(facts(t, "0000:11:00.0", "0000:14:00.0").pcie, "PHB");
  EXPECT_EQ(facts(t, "0000:06:00.0", "0000:11:00.0").pcie, "SYS");
  const auto f = facts(t, "0000:11:00.0", "0000:14:00.0");
  EXPECT_EQ(f.hops, 4);
  EXPECT_EQ(f.verdict, p2pdma_verdict::unknown) << "no root-bus 00.0 and no CPU vendor in the file";
}

// --- IBM x3950 M2: five host bridges over four NUMA nodes.

TEST(RealTopologyTest, SeveralHostBridgesGiveSysBetweenNodesAndPixWithinOneCard) {
  const topology t = load("96em64t-4n4d3ca2co-pci.xml");
  EXPECT_EQ(facts(t, "0000:02:00.0", "0000:02:00.1").pcie, "PIX");
  EXPECT_EQ(facts(t, "0000:02:00.0", "0000:02:00.1").verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(facts(t, "0000:02:00.0", "0000:32:00.0").pcie, "SYS");
  std::set<int> host_bridges;
  for (int i : t.functions()) host_bridges.insert(t.host_bridge_of(i));
  EXPECT_GE(host_bridges.size(), 4u);
}

// --- Supermicro AS-4124GS (corona): AMD EPYC 7402, Zen 2.

TEST(RealTopologyTest, AmdZenMachineRoutesEveryGpuPairThroughHostBridges) {
  const topology t = load("flux-core_corona.xml");
  EXPECT_EQ(cpu_supports_p2pdma(t.cpu()), tristate::yes);
  EXPECT_EQ(count_kind(t, device_kind::gpu), 8u);
  const auto f = facts(t, "0000:03:00.0", "0000:83:00.0");
  EXPECT_EQ(f.pcie, "SYS");
  EXPECT_EQ(f.verdict, p2pdma_verdict::thru_host_bridge);
  EXPECT_EQ(f.hops, 8);
  EXPECT_EQ(facts(t, "0000:03:00.0", "0000:27:00.0").pcie, "NODE");
}

// --- POWER: P100s on NVLink (power8gpudistances) and Sierra's V100s.

TEST(RealTopologyTest, Power8NvlinkPairsAreNv2AndPcieIsNotSupported) {
  const topology t = load("power8gpudistances.xml");
  EXPECT_EQ(cpu_supports_p2pdma(t.cpu()), tristate::no);
  const auto f = facts(t, "0002:01:00.0", "0003:01:00.0");
  EXPECT_EQ(f.path, "NV2") << "P100: NVLink 1.0, 20000 MB/s per link, 40000 in the matrix";
  EXPECT_EQ(f.pcie, "NODE");
  EXPECT_EQ(f.verdict, p2pdma_verdict::not_supported) << "IBM 1014:03dc is not on the list";
  EXPECT_EQ(facts(t, "0002:01:00.0", "000a:01:00.0").path, "SYS");
  auto d = peer_access(t, *pci_address::parse("0002:01:00.0"), *pci_address::parse("0003:01:00.0"));
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->allowed) << "NVLink";
}

TEST(RealTopologyTest, SierraGpusOnOnePhbArePhbWithUnknownVerdict) {
  const topology t = load("flux-core_sierra.xml");
  EXPECT_EQ(t.cpu().architecture, "ppc64le");
  const auto f = facts(t, "0004:04:00.0", "0004:05:00.0");
  EXPECT_EQ(f.pcie, "PHB");
  EXPECT_EQ(f.verdict, p2pdma_verdict::unknown) << "the v1 export has no root-bus devices";
  EXPECT_EQ(facts(t, "0004:04:00.0", "0035:03:00.0").pcie, "SYS");
}

// --- AMD MI300A APUs (tuo): xGMI links recorded by hwloc's RSMI backend.

TEST(RealTopologyTest, Mi300aApusAreXgmiConnected) {
  for (const char* file : {"flux-core_tuo.SPX.xml", "flux-core_tuo.CPX.xml"}) {
    const topology t = load(file);
    std::vector<int> gpus;
    for (int i : t.dma_devices()) {
      if (t.node(i).kind_of_device == device_kind::gpu) gpus.push_back(i);
    }
    ASSERT_EQ(gpus.size(), 4u) << file << ": one PCI function per APU, partitions merged";
    EXPECT_EQ(device_path(t, gpus[0], gpus[3]).label(), "XGMI") << file;
  }
}

TEST(RealTopologyTest, NoIoTopologyLoadsWithNoPciObjects) {
  const topology t = load("32em64t-2n8c2t-pci-noio.xml");
  EXPECT_TRUE(t.functions().empty());
  EXPECT_TRUE(t.nodes().empty());
}

}  // namespace
}  // namespace xbuf::p2p
