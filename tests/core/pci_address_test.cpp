// SPDX-License-Identifier: MIT
// The one PCI address type (core/pci_address.hpp): parsing, ordering, and
// the canonical form the GPU backends and the topology agree on.
#include "core/pci_address.hpp"

#include <gtest/gtest.h>

#include <string_view>

namespace xbuf {
namespace {

TEST(PciAddressTest, NormalizesDriverFormsToLowerCaseFourDigitDomain) {
  EXPECT_EQ(normalize_pci_address("0000:3B:00.0"), "0000:3b:00.0");
  EXPECT_EQ(normalize_pci_address("00000000:3B:00.0"), "0000:3b:00.0");
  EXPECT_EQ(normalize_pci_address("3b:1f.7"), "0000:3b:1f.7");
  EXPECT_EQ(normalize_pci_address(std::string_view("0001:C1:00.1\0", 13)), "0001:c1:00.1");
}

TEST(PciAddressTest, RejectsMalformedAddresses) {
  EXPECT_FALSE(normalize_pci_address(""));
  EXPECT_FALSE(normalize_pci_address("0000:3b:00"));
  EXPECT_FALSE(normalize_pci_address("0000:3b:20.0"));  // device > 0x1f
  EXPECT_FALSE(normalize_pci_address("0000:3b:00.8"));  // function > 7
  EXPECT_FALSE(normalize_pci_address("zz:00.0"));
  EXPECT_FALSE(normalize_pci_address("0000:3b:00.0x"));
}

TEST(PciAddressTest, KeepsThirtyTwoBitDomains) {
  // VMD and Hyper-V put devices in domains past 0xffff; one parser for the
  // topology and the backends must accept them both ways.
  auto a = pci_address::parse("10000:3b:00.0");
  ASSERT_TRUE(a) << a.err().describe();
  EXPECT_EQ(a->domain, 0x10000u);
  EXPECT_EQ(a->to_string(), "10000:3b:00.0");
  EXPECT_EQ(normalize_pci_address("0001000A:3B:00.0"), "1000a:3b:00.0");
  EXPECT_FALSE(pci_address::parse("100000000:00:00.0")) << "33-bit domain";
}

TEST(PciAddressTest, OrdersLikeLspci) {
  EXPECT_LT(*pci_address::parse("0000:3b:00.0"), *pci_address::parse("0000:3b:00.1"));
  EXPECT_LT(*pci_address::parse("0000:3b:1f.7"), *pci_address::parse("0000:3c:00.0"));
  EXPECT_LT(*pci_address::parse("0000:ff:00.0"), *pci_address::parse("0001:00:00.0"));
}

TEST(PciAddressTest, ParseErrorNamesTheText) {
  auto r = pci_address::parse("gpu0");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("'gpu0'"), std::string::npos) << r.err().message;
}

}  // namespace
}  // namespace xbuf
