// SPDX-License-Identifier: MIT
//
// peer_access(): the allocator's question, on hand-built trees.
#include <gtest/gtest.h>

#include "p2p/peer_policy.hpp"

namespace xbuf::p2p {
namespace {

pci_address bdf(unsigned bus, unsigned dev = 0, unsigned fn = 0) {
  return pci_address{0, static_cast<std::uint8_t>(bus), static_cast<std::uint8_t>(dev),
                     static_cast<std::uint8_t>(fn)};
}

// GPUs 0x13/0x14 share a switch; GPU 0x81 is on another host bridge whose
// Root Port is not allow-listed; GPU 0x91 sits on a host bridge with no
// root-bus device in the input.
struct machine {
  topology t;
  machine() {
    t.set_cpu(cpu_info{"x86_64", "GenuineIntel", 6});
    t.set_source("test machine");
    const int hb = t.add_host_bridge(0, 0x10, 0x1f, {0});
    const int rp = t.add_bridge(hb, bdf(0x10), 0x8086, 0x2030, 0x11, 0x14);
    const int usp = t.add_bridge(rp, bdf(0x11), 0x10b5, 0x9781, 0x12, 0x14);
    const int d0 = t.add_bridge(usp, bdf(0x12, 0), 0x10b5, 0x9781, 0x13, 0x13);
    const int d1 = t.add_bridge(usp, bdf(0x12, 1), 0x10b5, 0x9781, 0x14, 0x14);
    t.add_function(d0, bdf(0x13), 0x10de, 0x2330, 0x0302);
    t.add_function(d1, bdf(0x14), 0x10de, 0x2330, 0x0302);
    const int hb2 = t.add_host_bridge(0, 0x80, 0x8f, {1});
    const int rp2 = t.add_bridge(hb2, bdf(0x80), 0x8086, 0x1234, 0x81, 0x81);
    t.add_function(rp2, bdf(0x81), 0x10de, 0x2330, 0x0302);
    const int hb3 = t.add_host_bridge(0, 0x90, 0x9f, {1});
    const int rp3 = t.add_bridge(hb3, bdf(0x90, 1), 0x8086, 0x2030, 0x91, 0x91);
    t.add_function(rp3, bdf(0x91), 0x10de, 0x2330, 0x0302);
  }
};

TEST(PeerPolicyTest, SwitchPeersAreAllowedByTopologyWithoutRuntime) {
  machine m;
  auto d = peer_access(m.t, bdf(0x13), bdf(0x14));
  ASSERT_TRUE(d) << d.err().describe();
  EXPECT_TRUE(d->allowed);
  EXPECT_EQ(d->path.label(), "PIX");
  EXPECT_EQ(d->pcie.verdict, p2pdma_verdict::bus_addr);
  EXPECT_EQ(d->decided_by, peer_decider::topology);
  EXPECT_FALSE(d->runtime.has_value());
}

TEST(PeerPolicyTest, RuntimeVetoDeniesAndTheRuntimeDecided) {
  machine m;
  auto d = peer_access(m.t, bdf(0x13), bdf(0x14), false);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->decided_by, peer_decider::runtime);
  EXPECT_NE(d->reason.find("vetoes"), std::string::npos) << d->reason;
}

TEST(PeerPolicyTest, RuntimeConfirmationLeavesTheTopologyAsDecider) {
  machine m;
  auto d = peer_access(m.t, bdf(0x13), bdf(0x14), true);
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->allowed);
  EXPECT_EQ(d->decided_by, peer_decider::topology);
  EXPECT_EQ(d->runtime, std::optional<bool>(true));
}

TEST(PeerPolicyTest, NotSupportedPathIsDeniedWithoutRuntime) {
  machine m;
  auto d = peer_access(m.t, bdf(0x13), bdf(0x81));
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->allowed);
  EXPECT_EQ(d->pcie.verdict, p2pdma_verdict::not_supported);
  EXPECT_EQ(d->path.label(), "SYS");
}

TEST(PeerPolicyTest, UnknownVerdictIsRefusedUnlessTheRuntimeAllows) {
  machine m;
  auto d = peer_access(m.t, bdf(0x14), bdf(0x91));
  ASSERT_TRUE(d);
  EXPECT_EQ(d->pcie.verdict, p2pdma_verdict::unknown);
  EXPECT_FALSE(d->allowed);
  EXPECT_NE(d->reason.find("not proven reachable"), std::string::npos) << d->reason;

  auto r = peer_access(m.t, bdf(0x14), bdf(0x91), true);
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->allowed);
  EXPECT_EQ(r->decided_by, peer_decider::runtime);
}

TEST(PeerPolicyTest, KnownNvlinkAllowsWherePcieWouldNot) {
  machine m;
  m.t.add_link(*m.t.find(bdf(0x13)), *m.t.find(bdf(0x81)), link_kind::nvlink, 4);
  auto d = peer_access(m.t, bdf(0x81), bdf(0x13));
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->allowed);
  EXPECT_EQ(d->path.label(), "NV4");
  EXPECT_EQ(d->pcie.verdict, p2pdma_verdict::not_supported) << "shown separately";
}

TEST(PeerPolicyTest, UnknownAddressIsNotFoundNamingAddressAndTopology) {
  machine m;
  auto d = peer_access(m.t, bdf(0x13), bdf(0x55));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::not_found);
  EXPECT_NE(d.err().message.find("0000:55:00.0"), std::string::npos) << d.err().message;
  EXPECT_NE(d.err().message.find("test machine"), std::string::npos) << d.err().message;
}

TEST(PeerPolicyTest, BridgeAddressIsNotAPeerDevice) {
  machine m;
  auto d = peer_access(m.t, bdf(0x13), bdf(0x11));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::not_found);
}

TEST(PeerPolicyTest, SameDeviceNeedsNoPeerMapping) {
  machine m;
  auto d = peer_access(m.t, bdf(0x13), bdf(0x13));
  ASSERT_TRUE(d);
  EXPECT_TRUE(d->allowed);
  EXPECT_EQ(d->path.label(), "X");
}

}  // namespace
}  // namespace xbuf::p2p
