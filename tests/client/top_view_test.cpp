// SPDX-License-Identifier: MIT
// client/top_view: the screen of `xbuf top` as lines - width, bars, and the
// events made from counters that changed between refreshes.
#include "client/top_view.hpp"

#include <gtest/gtest.h>

namespace xbuf::client {
namespace {

wire::stats_reply reply(std::uint64_t allocations, std::uint64_t moved) {
  wire::stats_reply s;
  s.backend = "sim";
  s.domains.push_back({.name = "vram0", .where = placement::vram(0), .capacity = 32u << 20, .used = 16u << 20,
                       .delayed_free_bytes = 0, .buffers = 3, .peak_used = 20u << 20, .exported_bytes = 0,
                       .largest_free_block = 0, .fragmentation_ppm = 0});
  s.clients.push_back({.owner = 7, .pid = 42, .uid = 0, .name = std::string(80, 'n'), .bytes = 1u << 20,
                       .buffers = 1, .freed_exported_bytes = 0, .freed_attached_bytes = 0});
  s.counters = {{"allocations", allocations}, {"bytes_moved", moved}, {"frees", 0}};
  return s;
}

TEST(TopViewTest, EveryLineFitsTheTerminalAndTheBarShowsTheUse) {
  top_history h;
  const auto lines = render_top(reply(1, 0), h, "/run/xbuf/xbuf.sock", 80);
  bool bar = false;
  for (const auto& l : lines) {
    EXPECT_LE(l.size(), 80u) << l;
    bar = bar || l.find("[##########..........]") != std::string::npos;  // 16 of 32 MiB: half
  }
  EXPECT_TRUE(bar);
  EXPECT_NE(lines[0].find("every tenant"), std::string::npos) << lines[0];
}

TEST(TopViewTest, EventsAreTheCountersThatChangedNewestFirst) {
  top_history h;
  note_refresh(h, reply(1, 0), "12:00:00");
  EXPECT_TRUE(h.events.empty()) << "the first refresh has nothing to compare with";
  note_refresh(h, reply(1, 0), "12:00:01");
  EXPECT_TRUE(h.events.empty()) << "nothing changed";
  note_refresh(h, reply(4, 2u << 20), "12:00:02");
  note_refresh(h, reply(5, 2u << 20), "12:00:03");
  ASSERT_EQ(h.events.size(), 2u);
  EXPECT_EQ(h.events[0], "12:00:03  allocations +1");
  EXPECT_EQ(h.events[1], "12:00:02  allocations +3  moved 2 MiB");
  for (int i = 0; i < 20; ++i) note_refresh(h, reply(6 + static_cast<std::uint64_t>(i), 0), "t");
  EXPECT_EQ(h.events.size(), top_history::max_events);
}

}  // namespace
}  // namespace xbuf::client
