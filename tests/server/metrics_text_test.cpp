// SPDX-License-Identifier: MIT
//
// The Prometheus text of a stats reply, without a daemon: label values
// escaped, each family's HELP and TYPE written once with its samples
// together, values written exactly, device labels taken from the backend,
// and a real manager's counters under their metric names.
#include "server/metrics_text.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "server/stats.hpp"
#include "tests/common/sim_manager.hpp"

namespace xbuf::server {
namespace {

using test::KiB;

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// The metric name of a sample line ("xbuf_x{a=\"b\"} 1" -> "xbuf_x").
std::string name_of(const std::string& sample) { return sample.substr(0, sample.find_first_of("{ ")); }

// The value of the one sample line that starts with `series` and a space.
std::string value_of(const std::string& text, const std::string& series) {
  std::string found;
  int n = 0;
  for (const auto& l : lines_of(text)) {
    if (l.rfind(series + " ", 0) == 0) {
      found = l.substr(series.size() + 1);
      ++n;
    }
  }
  EXPECT_EQ(n, 1) << series << " in:\n" << text;
  return found;
}

wire::stats_reply two_domains() {
  wire::stats_reply s;
  s.backend = "sim";
  s.domains.push_back({.name = "vram0", .where = placement::vram(0), .capacity = 1024, .used = 512,
                       .delayed_free_bytes = 0, .buffers = 2, .peak_used = 768});
  s.domains.push_back({.name = "pageable", .where = placement::pageable(), .capacity = 4096, .used = 0,
                       .delayed_free_bytes = 0, .buffers = 0, .peak_used = 0});
  s.counters = {{"allocations", 3}, {"evictions", 1}, {"bytes_moved", 4096}, {"pinned_bytes", 10}};
  return s;
}

std::vector<device_info> one_gpu() {
  return {{.name = "GPU \"A\"", .vendor = "nvidia", .pci_address = "0000:34:00.0", .numa_node = 0,
           .memory_bytes = 1024}};
}

TEST(MetricsTextTest, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(escape_label_value(R"(a\b"c)" "\nd"), R"(a\\b\"c\nd)");
  EXPECT_EQ(escape_label_value("plain vram0 ü"), "plain vram0 ü");

  wire::stats_reply s = two_domains();
  s.domains[0].name = "odd\"name\\\n";
  const std::string text = render_metrics(s, one_gpu());
  EXPECT_NE(text.find(R"(xbuf_domain_used_bytes{domain="odd\"name\\\n",kind="vram",device="0000:34:00.0"} 512)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(R"(name="GPU \"A\"")"), std::string::npos) << text;
  // An unescaped newline would have split a sample over two lines.
  for (const auto& l : lines_of(text)) {
    EXPECT_TRUE(l.rfind("# HELP xbuf_", 0) == 0 || l.rfind("# TYPE xbuf_", 0) == 0 || l.rfind("xbuf_", 0) == 0)
        << "stray line: " << l;
  }
}

TEST(MetricsTextTest, EachFamilyHasOneHelpAndOneTypeFollowedByAllItsSamples) {
  const std::string text = render_metrics(two_domains(), one_gpu());
  std::map<std::string, int> helps;
  std::map<std::string, int> types;
  std::set<std::string> closed;  // families whose samples ended
  std::string current;
  for (const auto& l : lines_of(text)) {
    if (l.rfind("# HELP ", 0) == 0) {
      const std::string name = l.substr(7, l.find(' ', 7) - 7);
      ++helps[name];
      if (!current.empty()) closed.insert(current);
      current = name;
    } else if (l.rfind("# TYPE ", 0) == 0) {
      const std::string name = l.substr(7, l.find(' ', 7) - 7);
      ++types[name];
      EXPECT_EQ(name, current) << "TYPE without its HELP just before: " << l;
    } else {
      const std::string name = name_of(l);
      EXPECT_EQ(name, current) << "a sample outside its family: " << l;
      EXPECT_FALSE(closed.contains(name)) << "family written twice: " << l;
    }
  }
  EXPECT_GE(helps.size(), 10u);
  for (const auto& [name, n] : helps) EXPECT_EQ(n, 1) << name;
  for (const auto& [name, n] : types) EXPECT_EQ(n, 1) << name;
  EXPECT_EQ(helps.size(), types.size());
  // Two domains: two samples under the one header.
  std::size_t used_samples = 0;
  for (const auto& l : lines_of(text)) used_samples += l.rfind("xbuf_domain_used_bytes{", 0) == 0;
  EXPECT_EQ(used_samples, 2u);
}

TEST(MetricsTextTest, ValuesAreWrittenAsExactIntegers) {
  wire::stats_reply s = two_domains();
  s.domains[1].capacity = UINT64_MAX;     // a double would print 1.8446744073709552e+19
  s.domains[1].used = (1ull << 53) + 1;   // not a double at all
  const std::string text = render_metrics(s, {});
  EXPECT_EQ(value_of(text, R"(xbuf_domain_capacity_bytes{domain="pageable",kind="pageable",device=""})"),
            "18446744073709551615");
  EXPECT_EQ(value_of(text, R"(xbuf_domain_used_bytes{domain="pageable",kind="pageable",device=""})"),
            "9007199254740993");
}

TEST(MetricsTextTest, DeviceLabelIsThePciAddressOfTheDomainsGpuOrEmpty) {
  wire::stats_reply s = two_domains();
  s.domains.push_back({.name = "vram7", .where = placement::vram(7), .capacity = 1, .used = 0,
                       .delayed_free_bytes = 0, .buffers = 0, .peak_used = 0});
  const std::string text = render_metrics(s, one_gpu());
  EXPECT_EQ(value_of(text, R"(xbuf_domain_peak_used_bytes{domain="vram0",kind="vram",device="0000:34:00.0"})"), "768");
  // A device the backend does not list (out of range) and host memory: no address.
  EXPECT_EQ(value_of(text, R"(xbuf_domain_capacity_bytes{domain="vram7",kind="vram",device=""})"), "1");
  EXPECT_EQ(value_of(text, R"(xbuf_domain_buffers{domain="pageable",kind="pageable",device=""})"), "0");
  EXPECT_EQ(value_of(text, R"(xbuf_device_info{device="0000:34:00.0",index="0",name="GPU \"A\"",vendor="nvidia"})"),
            "1");
  EXPECT_EQ(value_of(text, R"(xbuf_backend_info{backend="sim"})"), "1");
}

TEST(MetricsTextTest, CountersEndInTotalAndAnUnknownOneIsUntyped) {
  wire::stats_reply s = two_domains();
  s.counters.push_back({"new-thing", 5});
  s.more_clients = 2;
  s.clients.push_back({.owner = 1, .pid = 1, .uid = 0, .name = "job", .bytes = 0, .buffers = 0});
  const std::string text = render_metrics(s, {});
  EXPECT_NE(text.find("# TYPE xbuf_evictions_total counter\nxbuf_evictions_total 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE xbuf_moved_bytes_total counter\nxbuf_moved_bytes_total 4096\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE xbuf_pinned_bytes gauge\nxbuf_pinned_bytes 10\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE xbuf_new_thing untyped\nxbuf_new_thing 5\n"), std::string::npos) << text;
  // Counters the reply does not carry are not invented.
  EXPECT_EQ(text.find("xbuf_clears_total"), std::string::npos);
  // Clients: listed and left out, and no series per client.
  EXPECT_EQ(value_of(text, "xbuf_clients"), "3");
  EXPECT_EQ(text.find("job"), std::string::npos) << text;
}

// The names stats.cpp gives its counters are the ones this file maps: a
// renamed counter would fall back to untyped here.
TEST(MetricsTextTest, ARealManagersStatsUseTheDescribedNames) {
  test::sim_manager sm;
  auto b = sm.mm->allocate(1, test::request(64 * KiB, {placement::pageable()}));
  ASSERT_TRUE(b) << b.err().describe();
  const std::string text = render_metrics(collect_stats(*sm.mm), sm.sim->devices());
  EXPECT_EQ(text.find(" untyped\n"), std::string::npos) << text;
  EXPECT_EQ(value_of(text, "xbuf_allocations_total"), "1");
  EXPECT_EQ(value_of(text, R"(xbuf_domain_used_bytes{domain="pageable",kind="pageable",device=""})"),
            std::to_string(64 * KiB));
  EXPECT_EQ(value_of(text, "xbuf_buffers"), "1");
  EXPECT_EQ(value_of(text, R"(xbuf_domain_exported_bytes{domain="pageable",kind="pageable",device=""})"), "0");
  for (const char* family : {"xbuf_frees_total", "xbuf_moves_total", "xbuf_allocation_failures_total",
                             "xbuf_clears_total", "xbuf_cleared_bytes_total", "xbuf_pinned_limit_bytes"}) {
    EXPECT_NE(text.find(std::string("\n") + family + " "), std::string::npos) << family << " missing:\n" << text;
  }
}

}  // namespace
}  // namespace xbuf::server
