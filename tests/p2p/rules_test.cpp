// SPDX-License-Identifier: MIT
//
// The p2p rules on small hand-built PCI trees (no hwloc): path levels,
// the Linux p2pdma verdict and distance, ACS, the host-bridge allow-list,
// the AMD Zen rule, sockets, missing root-bus devices, NVLink/xGMI.
#include <gtest/gtest.h>

#include "core/pci_address.hpp"
#include "p2p/rules.hpp"
#include "p2p/topology.hpp"

namespace xbuf::p2p {
namespace {

constexpr std::uint16_t intel = 0x8086;
constexpr std::uint16_t skx_root_port_a = 0x2030;  // allow-listed, any host bridges
constexpr std::uint16_t hsx_dmi2 = 0x2f00;         // allow-listed, same host bridge only
constexpr std::uint16_t unlisted_root_port = 0x1234;
constexpr std::uint16_t plx = 0x10b5;
constexpr std::uint16_t gpu_class = 0x0302;

pci_address bdf(unsigned bus, unsigned dev, unsigned fn = 0, unsigned domain = 0) {
  return pci_address{domain, static_cast<std::uint8_t>(bus), static_cast<std::uint8_t>(dev),
                     static_cast<std::uint8_t>(fn)};
}

cpu_info intel_cpu() { return cpu_info{"x86_64", "GenuineIntel", 6}; }

int add_gpu(topology& t, int parent, pci_address a) {
  return t.add_function(parent, a, 0x10de, 0x1db8, gpu_class, {"cuda"});
}

// Host bridge 0000:[10-1f] with Root Port 10:00.0 -> switch (USP 11:00.0,
// DSPs 12:00.0 and 12:01.0) -> GPUs 13:00.0 and 14:00.0.
struct one_switch {
  topology t;
  int hb, rp, usp, dsp0, dsp1, gpu0, gpu1;
  explicit one_switch(std::uint16_t root_port_id = skx_root_port_a) {
    t.set_cpu(intel_cpu());
    hb = t.add_host_bridge(0, 0x10, 0x1f, {0}, "0-7");
    rp = t.add_bridge(hb, bdf(0x10, 0), intel, root_port_id, 0x11, 0x14);
    usp = t.add_bridge(rp, bdf(0x11, 0), plx, 0x9781, 0x12, 0x14);
    dsp0 = t.add_bridge(usp, bdf(0x12, 0), plx, 0x9781, 0x13, 0x13);
    dsp1 = t.add_bridge(usp, bdf(0x12, 1), plx, 0x9781, 0x14, 0x14);
    gpu0 = add_gpu(t, dsp0, bdf(0x13, 0));
    gpu1 = add_gpu(t, dsp1, bdf(0x14, 0));
  }
};

TEST(RulesTest, TwoGpusUnderOneSwitchAreBusAddrDistance4) {
  one_switch s;
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(r.hops, 4);
  EXPECT_EQ(r.distance(), 4);
  EXPECT_NE(r.reason.find("0000:11:00.0"), std::string::npos) << r.reason;
  EXPECT_EQ(pcie_path(s.t, s.gpu0, s.gpu1).label(), "PIX");
}

TEST(RulesTest, SameFunctionIsBusAddrDistance0AndX) {
  one_switch s;
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu0);
  EXPECT_EQ(r.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(r.distance(), 0);
  EXPECT_EQ(device_path(s.t, s.gpu0, s.gpu0).label(), "X");
}

TEST(RulesTest, TwoFunctionsOfOneDeviceAreBusAddrDistance2AndPix) {
  topology t;
  t.set_cpu(intel_cpu());
  const int hb = t.add_host_bridge(0, 0, 0x0f);
  const int rp = t.add_bridge(hb, bdf(0, 0), intel, skx_root_port_a, 1, 1);
  const int f0 = t.add_function(rp, bdf(1, 0, 0), 0x15b3, 0x1017, 0x0200, {"mlx5_0"});
  const int f1 = t.add_function(rp, bdf(1, 0, 1), 0x15b3, 0x1017, 0x0200, {"mlx5_1"});
  const p2pdma_result r = p2pdma(t, f0, f1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(r.hops, 2);
  EXPECT_EQ(pcie_path(t, f0, f1).label(), "PIX");
}

TEST(RulesTest, TwoSwitchesUnderOneRootPortAreBusAddrDistance8AndPxb) {
  // Root Port -> big switch (USP 21:00.0, DSPs 22:00.0/22:01.0) -> two small
  // switches -> one GPU each: the DGX-2 shape.
  topology t;
  t.set_cpu(intel_cpu());
  const int hb = t.add_host_bridge(0, 0x20, 0x2f);
  const int rp = t.add_bridge(hb, bdf(0x20, 0), intel, skx_root_port_a, 0x21, 0x2f);
  const int big = t.add_bridge(rp, bdf(0x21, 0), plx, 0x9797, 0x22, 0x2f);
  int gpus[2];
  for (unsigned k = 0; k < 2; ++k) {
    const unsigned base = 0x23 + 3 * k;
    const int down = t.add_bridge(big, bdf(0x22, k), plx, 0x9797, static_cast<std::uint8_t>(base),
                                  static_cast<std::uint8_t>(base + 2));
    const int usp = t.add_bridge(down, bdf(base, 0), plx, 0x9781,
                                 static_cast<std::uint8_t>(base + 1),
                                 static_cast<std::uint8_t>(base + 2));
    const int dsp = t.add_bridge(usp, bdf(base + 1, 0), plx, 0x9781,
                                 static_cast<std::uint8_t>(base + 2),
                                 static_cast<std::uint8_t>(base + 2));
    gpus[k] = add_gpu(t, dsp, bdf(base + 2, 0));
  }
  const p2pdma_result r = p2pdma(t, gpus[0], gpus[1]);
  EXPECT_EQ(r.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(r.hops, 8);
  EXPECT_NE(r.reason.find("0000:21:00.0"), std::string::npos) << r.reason;
  EXPECT_EQ(pcie_path(t, gpus[0], gpus[1]).label(), "PXB");
}

TEST(RulesTest, AcsRedirectOnSwitchPortForcesAllowListedHostBridge) {
  one_switch s;
  s.t.set_acs(s.dsp1, acs_state::redirect);
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::thru_host_bridge);
  EXPECT_EQ(r.hops, 4) << "the kernel keeps the distance under ACS redirect";
  ASSERT_EQ(r.acs_redirect_nodes.size(), 1u);
  EXPECT_EQ(r.acs_redirect_nodes[0], s.dsp1);
  EXPECT_NE(r.reason.find("disable_acs_redir=0000:12:01.0"), std::string::npos) << r.reason;
  // nvidia-smi's level ignores ACS.
  EXPECT_EQ(pcie_path(s.t, s.gpu0, s.gpu1).label(), "PIX");
}

TEST(RulesTest, AcsRedirectUnderUnlistedHostBridgeIsNotSupported) {
  one_switch s(unlisted_root_port);
  s.t.set_acs(s.gpu0, acs_state::redirect);  // endpoints are tested too
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::not_supported);
  EXPECT_EQ(r.distance(), -1);
  EXPECT_NE(r.reason.find("not on the allow-list"), std::string::npos) << r.reason;
}

TEST(RulesTest, AcsAboveTheCommonSwitchIsNotOnThePath) {
  one_switch s(unlisted_root_port);
  s.t.set_acs(s.rp, acs_state::redirect);  // above the common USP: not tested by the kernel
  EXPECT_EQ(p2pdma(s.t, s.gpu0, s.gpu1).verdict, p2pdma_verdict::bus_addr);
}

TEST(RulesTest, UnknownAcsAssumesNoRedirectAndSaysSo) {
  one_switch s;  // every node's ACS is unknown by default, as for XML input
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::bus_addr);
  EXPECT_TRUE(r.acs_assumed);
  EXPECT_NE(r.reason.find("assumes no ACS redirect"), std::string::npos) << r.reason;
}

TEST(RulesTest, KnownAbsentAcsMakesNoAssumption) {
  one_switch s;
  for (int i : {s.gpu0, s.gpu1, s.dsp0, s.dsp1, s.usp, s.rp}) s.t.set_acs(i, acs_state::absent);
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::bus_addr);
  EXPECT_FALSE(r.acs_assumed);
  EXPECT_EQ(r.reason.find("ACS"), std::string::npos) << r.reason;
}

// Root bus 00 with Root Ports 00.0 (`id`) and 01.0, one GPU under each.
struct two_root_ports {
  topology t;
  int hb, rp0, rp1, gpu0, gpu1;
  explicit two_root_ports(std::uint16_t id, cpu_info cpu = intel_cpu()) {
    t.set_cpu(std::move(cpu));
    hb = t.add_host_bridge(0, 0, 0x0f, {0}, "0-7");
    rp0 = t.add_bridge(hb, bdf(0, 0), intel, id, 1, 1);
    rp1 = t.add_bridge(hb, bdf(0, 1), intel, id, 2, 2);
    gpu0 = add_gpu(t, rp0, bdf(1, 0));
    gpu1 = add_gpu(t, rp1, bdf(2, 0));
  }
};

TEST(RulesTest, DifferentRootPortsOfAllowListedHostBridgeAreThruHostBridgeDistance4) {
  two_root_ports s(skx_root_port_a);
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::thru_host_bridge);
  EXPECT_EQ(r.hops, 4);
  EXPECT_NE(r.reason.find("Sky Lake-E"), std::string::npos) << r.reason;
  EXPECT_EQ(pcie_path(s.t, s.gpu0, s.gpu1).label(), "PHB");
}

TEST(RulesTest, DifferentRootPortsOfUnlistedHostBridgeAreNotSupported) {
  two_root_ports s(unlisted_root_port);
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::not_supported);
  EXPECT_EQ(r.distance(), -1);
  EXPECT_EQ(r.hops, 4);
}

TEST(RulesTest, AmdZenCpuRoutesThroughAnyHostBridge) {
  two_root_ports s(unlisted_root_port, cpu_info{"x86_64", "AuthenticAMD", 0x17});
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::thru_host_bridge);
  EXPECT_NE(r.reason.find("AMD Zen"), std::string::npos) << r.reason;
}

TEST(RulesTest, AmdCpuOlderThanZenUsesTheAllowList) {
  two_root_ports s(unlisted_root_port, cpu_info{"x86_64", "AuthenticAMD", 0x15});
  EXPECT_EQ(p2pdma(s.t, s.gpu0, s.gpu1).verdict, p2pdma_verdict::not_supported);
}

TEST(RulesTest, UnknownCpuVendorOnX86WithUnlistedBridgeIsUnknown) {
  two_root_ports s(unlisted_root_port, cpu_info{"x86_64", "", std::nullopt});
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::unknown);
  EXPECT_NE(r.reason.find("CPU vendor/family unknown"), std::string::npos) << r.reason;
}

TEST(RulesTest, ZenRuleIsX86Only) {
  EXPECT_EQ(cpu_supports_p2pdma({"ppc64le", "", std::nullopt}), tristate::no);
  EXPECT_EQ(cpu_supports_p2pdma({"aarch64", "AuthenticAMD", 0x19}), tristate::no);
  EXPECT_EQ(cpu_supports_p2pdma({"x86_64", "AuthenticAMD", 0x19}), tristate::yes);
  EXPECT_EQ(cpu_supports_p2pdma({"x86_64", "GenuineIntel", 6}), tristate::no);
  EXPECT_EQ(cpu_supports_p2pdma({"x86_64", "AuthenticAMD", std::nullopt}), tristate::unknown);
}

// Two host bridges (00 and 80), one GPU below a Root Port 00.0 on each.
struct two_host_bridges {
  topology t;
  int gpu0, gpu1;
  two_host_bridges(std::uint16_t id0, std::uint16_t id1, std::vector<unsigned> numa0,
                   std::vector<unsigned> numa1) {
    t.set_cpu(intel_cpu());
    const int hb0 = t.add_host_bridge(0, 0x00, 0x7f, std::move(numa0));
    const int hb1 = t.add_host_bridge(0, 0x80, 0xff, std::move(numa1));
    const int rp0 = t.add_bridge(hb0, bdf(0x00, 0), intel, id0, 0x01, 0x01);
    const int rp1 = t.add_bridge(hb1, bdf(0x80, 0), intel, id1, 0x81, 0x81);
    gpu0 = add_gpu(t, rp0, bdf(0x01, 0));
    gpu1 = add_gpu(t, rp1, bdf(0x81, 0));
  }
};

TEST(RulesTest, DifferentHostBridgesBothAllowListedAreThruHostBridgeAndNode) {
  two_host_bridges s(skx_root_port_a, skx_root_port_a, {0}, {0});
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::thru_host_bridge);
  EXPECT_EQ(r.hops, 4);
  EXPECT_EQ(pcie_path(s.t, s.gpu0, s.gpu1).label(), "NODE");
}

TEST(RulesTest, DifferentSocketsAreSysButTheKernelIgnoresSockets) {
  two_host_bridges s(skx_root_port_a, skx_root_port_a, {0}, {1});
  EXPECT_EQ(pcie_path(s.t, s.gpu0, s.gpu1).label(), "SYS");
  EXPECT_EQ(p2pdma(s.t, s.gpu0, s.gpu1).verdict, p2pdma_verdict::thru_host_bridge);
}

TEST(RulesTest, UnknownNumaLocalityReadsAsSys) {
  two_host_bridges s(skx_root_port_a, skx_root_port_a, {}, {});
  EXPECT_EQ(pcie_path(s.t, s.gpu0, s.gpu1).label(), "SYS");
}

TEST(RulesTest, DifferentHostBridgesNeedBothAllowListed) {
  two_host_bridges s(skx_root_port_a, unlisted_root_port, {0}, {0});
  const p2pdma_result r = p2pdma(s.t, s.gpu0, s.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::not_supported);
  EXPECT_NE(r.reason.find("0000:80:00.0"), std::string::npos) << r.reason;
}

TEST(RulesTest, SameHostBridgeOnlyEntryAllowsOneHostBridgeButNotTwo) {
  two_root_ports same(hsx_dmi2);
  EXPECT_EQ(p2pdma(same.t, same.gpu0, same.gpu1).verdict, p2pdma_verdict::thru_host_bridge);
  two_host_bridges apart(hsx_dmi2, hsx_dmi2, {0}, {0});
  const p2pdma_result r = p2pdma(apart.t, apart.gpu0, apart.gpu1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::not_supported);
  EXPECT_NE(r.reason.find("only within one host bridge"), std::string::npos) << r.reason;
}

TEST(RulesTest, MissingRootBusDeviceMakesHostBridgeCheckUnknown) {
  // Root Ports at 01.0 and 02.0 only: a filtered export may have dropped 00.0.
  topology t;
  t.set_cpu(intel_cpu());
  const int hb = t.add_host_bridge(0, 0, 0x0f);
  const int rp1 = t.add_bridge(hb, bdf(0, 1), intel, skx_root_port_a, 1, 1);
  const int rp2 = t.add_bridge(hb, bdf(0, 2), intel, skx_root_port_a, 2, 2);
  const int g0 = add_gpu(t, rp1, bdf(1, 0));
  const int g1 = add_gpu(t, rp2, bdf(2, 0));
  const p2pdma_result r = p2pdma(t, g0, g1);
  EXPECT_EQ(r.verdict, p2pdma_verdict::unknown);
  EXPECT_NE(r.reason.find("00.0 is not in the input"), std::string::npos) << r.reason;
  EXPECT_NE(r.reason.find("0000:00:01.0"), std::string::npos) << "names the lowest Root Port";

  // With the whole root bus known (live machine), the first device is that
  // Root Port and the kernel accepts it.
  t.set_root_buses_complete(true);
  EXPECT_EQ(p2pdma(t, g0, g1).verdict, p2pdma_verdict::thru_host_bridge);
}

TEST(RulesTest, CompleteRootBusWhoseFirstDeviceIsNeitherDevfn0NorRootPortFails) {
  topology t;
  t.set_cpu(intel_cpu());
  t.set_root_buses_complete(true);
  const int hb = t.add_host_bridge(0, 0, 0x0f);
  t.add_function(hb, bdf(0, 0, 1), intel, 0x2020, 0x0880);  // 00.1: not 00.0, not a Root Port
  const int rp = t.add_bridge(hb, bdf(0, 1), intel, skx_root_port_a, 1, 2);
  const int rp2 = t.add_bridge(hb, bdf(0, 2), intel, skx_root_port_a, 3, 3);
  const int g0 = add_gpu(t, rp, bdf(1, 0));
  const int g1 = add_gpu(t, rp2, bdf(3, 0));
  const root_bus_device d = host_bridge_device(t, hb);
  EXPECT_FALSE(d.node.has_value());
  EXPECT_TRUE(d.rejected);
  EXPECT_EQ(p2pdma(t, g0, g1).verdict, p2pdma_verdict::not_supported);
}

TEST(RulesTest, DirectNvlinkOverridesThePcieLevel) {
  two_host_bridges s(unlisted_root_port, unlisted_root_port, {0}, {1});
  s.t.add_link(s.gpu0, s.gpu1, link_kind::nvlink, 2);
  EXPECT_EQ(device_path(s.t, s.gpu0, s.gpu1).label(), "NV2");
  EXPECT_EQ(pcie_path(s.t, s.gpu0, s.gpu1).label(), "SYS");
}

TEST(RulesTest, GpusOnNvSwitchesGetTheSmallerLinkCount) {
  topology t;
  t.set_cpu(intel_cpu());
  const int hb = t.add_host_bridge(0, 0, 0x0f);
  const int rp = t.add_bridge(hb, bdf(0, 0), intel, skx_root_port_a, 1, 5);
  const int g0 = add_gpu(t, rp, bdf(1, 0));
  const int g1 = add_gpu(t, rp, bdf(2, 0));
  const int sw0 = t.add_function(rp, bdf(3, 0), 0x10de, 0x1ac2, 0x0680);
  const int sw1 = t.add_function(rp, bdf(4, 0), 0x10de, 0x1ac2, 0x0680);
  ASSERT_EQ(t.node(sw0).kind_of_device, device_kind::nvswitch);
  t.add_link(g0, sw0, link_kind::nvlink, 3);
  t.add_link(g0, sw1, link_kind::nvlink, 3);
  t.add_link(g1, sw0, link_kind::nvlink, 2);
  EXPECT_EQ(device_path(t, g0, g1).label(), "NV2");
}

TEST(RulesTest, XgmiLinkIsLabelledXgmi) {
  two_host_bridges s(unlisted_root_port, unlisted_root_port, {0}, {0});
  s.t.add_link(s.gpu0, s.gpu1, link_kind::xgmi, 0);
  EXPECT_EQ(device_path(s.t, s.gpu0, s.gpu1).label(), "XGMI");
}

TEST(RulesTest, AllowListHasTheKernelEntries) {
  const allow_list_entry* skx = find_allow_list_entry(0x8086, 0x2030);
  ASSERT_NE(skx, nullptr);
  EXPECT_FALSE(skx->same_host_bridge_only);
  const allow_list_entry* hsx = find_allow_list_entry(0x8086, 0x2f01);
  ASSERT_NE(hsx, nullptr);
  EXPECT_TRUE(hsx->same_host_bridge_only);
  EXPECT_NE(find_allow_list_entry(0x1ae0, 0xabcd), nullptr) << "Google: any device";
  EXPECT_NE(find_allow_list_entry(0x8086, 0x09a2), nullptr);
  EXPECT_EQ(find_allow_list_entry(0x10de, 0x1db8), nullptr);
  EXPECT_EQ(find_allow_list_entry(0x1022, 0x1483), nullptr) << "AMD goes by the CPU rule";
}

TEST(RulesTest, ClassifiesGpusNicsAndBmcDisplays) {
  EXPECT_EQ(classify(0x0302, 0x10de, {}), device_kind::gpu);
  EXPECT_EQ(classify(0x0380, 0x1002, {"rsmi0"}), device_kind::gpu);
  EXPECT_EQ(classify(0x1200, 0x1002, {"rsmi0"}), device_kind::gpu);
  EXPECT_EQ(classify(0x1200, 0x8086, {}), device_kind::accelerator);
  EXPECT_EQ(classify(0x0300, 0x102b, {}), device_kind::other) << "Matrox BMC display";
  EXPECT_EQ(classify(0x0300, 0x1002, {"card0"}), device_kind::other) << "ATI ES1000";
  EXPECT_EQ(classify(0x0207, 0x15b3, {"mlx5_0"}), device_kind::nic);
  EXPECT_EQ(classify(0x0108, 0x144d, {}), device_kind::nvme);
}

TEST(RulesTest, DmaDevicesListGpusFirstThenNicsThenTheRest) {
  topology t;
  const int hb = t.add_host_bridge(0, 0, 0xff);
  const int nvme = t.add_function(hb, bdf(0x01, 0), 0x144d, 0xa824, 0x0108);
  const int nic = t.add_function(hb, bdf(0x02, 0), 0x15b3, 0x1021, 0x0207);
  const int gpu_b = add_gpu(t, hb, bdf(0x20, 0));
  const int gpu_a = add_gpu(t, hb, bdf(0x10, 0));
  t.add_function(hb, bdf(0x03, 0), 0x102b, 0x0536, 0x0300);  // BMC VGA: not DMA-listed
  EXPECT_EQ(t.dma_devices(), (std::vector<int>{gpu_a, gpu_b, nic, nvme}));
}

TEST(PciAddressTest, ParsesFullAndDomainlessForms) {
  auto a = pci_address::parse("0000:3b:00.0");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->bus, 0x3b);
  EXPECT_EQ(a->to_string(), "0000:3b:00.0");
  auto b = pci_address::parse("3B:1f.7");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->device, 0x1f);
  EXPECT_EQ(b->function, 7);
  EXPECT_EQ(b->devfn(), 0xffu);
  auto c = pci_address::parse("10000:00:00.0");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->domain, 0x10000u);
}

TEST(PciAddressTest, RejectsGarbageNamingTheText) {
  for (const char* bad : {"", "zz:00.0", "00:20.0", "00:00.8", "0000:00:00", "00.0:00", "1:2:3:4.0"}) {
    auto r = pci_address::parse(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.code(), errc::invalid_argument);
    EXPECT_NE(r.err().message.find(std::string("'") + bad + "'"), std::string::npos);
  }
}

TEST(PciAddressTest, OrdersByDomainBusDeviceFunction) {
  EXPECT_LT(bdf(0xff, 0x1f, 7, 0), bdf(0, 0, 0, 1));
  EXPECT_LT(bdf(1, 0x1f, 7), bdf(2, 0, 0));
  EXPECT_LT(bdf(1, 0, 0), bdf(1, 0, 1));
}

}  // namespace
}  // namespace xbuf::p2p
