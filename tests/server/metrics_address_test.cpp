// SPDX-License-Identifier: MIT
//
// `--metrics HOST:PORT`: the loopback forms are taken, everything else is
// refused with a reason, and the printed form reads back as the same
// address.
#include "server/metrics_address.hpp"

#include <gtest/gtest.h>

#include <string>

namespace xbuf::server {
namespace {

TEST(MetricsAddressTest, TakesLoopbackAddressesWithAPort) {
  auto a = parse_metrics_address("127.0.0.1:9100");
  ASSERT_TRUE(a) << a.err().describe();
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 9100);

  auto any = parse_metrics_address("127.1.2.3:0");
  ASSERT_TRUE(any) << any.err().describe();
  EXPECT_EQ(any->host, "127.1.2.3");
  EXPECT_EQ(any->port, 0);

  auto v6 = parse_metrics_address("[::1]:65535");
  ASSERT_TRUE(v6) << v6.err().describe();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->port, 65535);
  EXPECT_TRUE(v6->is_ipv6());

  auto named = parse_metrics_address("localhost:80");
  ASSERT_TRUE(named) << named.err().describe();
  EXPECT_EQ(named->host, "127.0.0.1");
}

TEST(MetricsAddressTest, RefusesEverythingElseNamingTheText) {
  for (const char* text : {"", ":80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:-1",
                           "127.0.0.1:0x10", "127.0.0.1:80 ", "127.1:80", "0.0.0.0:80", "10.0.0.1:80",
                           "128.0.0.1:80", "::1:80", "[::1]", "[::1]80", "[::1:80", "[::2]:80", "[::]:80",
                           "localhost.:80", "example.com:80"}) {
    auto a = parse_metrics_address(text);
    ASSERT_FALSE(a) << "'" << text << "' was taken as " << to_string(*a);
    EXPECT_EQ(a.code(), errc::invalid_argument);
    EXPECT_NE(a.err().message.find(std::string("'") + text + "'"), std::string::npos) << a.err().message;
  }
  EXPECT_NE(parse_metrics_address("0.0.0.0:80").err().message.find("not a loopback address"), std::string::npos);
  EXPECT_NE(parse_metrics_address("127.0.0.1:x").err().message.find("is not a port"), std::string::npos);
}

TEST(MetricsAddressTest, ThePrintedFormReadsBack) {
  for (const char* text : {"127.0.0.1:9100", "[::1]:0"}) {
    auto a = parse_metrics_address(text);
    ASSERT_TRUE(a);
    EXPECT_EQ(to_string(*a), text);
    auto again = parse_metrics_address(to_string(*a));
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *a);
  }
  EXPECT_EQ(metrics_url(*parse_metrics_address("[::1]:43121")), "http://[::1]:43121/metrics");
  EXPECT_EQ(metrics_url(*parse_metrics_address("localhost:43121")), "http://127.0.0.1:43121/metrics");
}

}  // namespace
}  // namespace xbuf::server
