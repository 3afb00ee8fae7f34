// SPDX-License-Identifier: MIT
//
// top_view.hpp - the screen `xbuf top` draws, as text lines (no terminal).
//
// Overview
//   render_top() lays out one stats reply for a terminal of `cols` columns:
//   a header (socket, backend, which view the daemon gave), the domains
//   with a bar of used / capacity, the clients, and the recent events. The
//   daemon has no event stream for a tenant, so "recent" is what changed
//   between refreshes: note_refresh() compares the counters with the last
//   ones and keeps a line per refresh in which any moved ("allocations +3
//   evictions +1 moved 2.0 MiB"), newest first.
//
// Rules
//   - Pure: no I/O; every line is at most `cols` characters (cut, never
//     wrapped), so the terminal never scrolls. Byte counts in binary units.
#pragma once

#include <cstddef>
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "server/protocol.hpp"

namespace xbuf::client {

struct top_history {
  std::vector<wire::stat_counter> last;  // the counters at the previous refresh
  bool primed = false;                   // `last` holds a refresh
  std::deque<std::string> events;        // newest first
  static constexpr std::size_t max_events = 8;
};

// Folds the counters of `now` into `h`; `clock` ("12:00:01") starts the
// event line, if any counter changed since the last call.
void note_refresh(top_history& h, const wire::stats_reply& now, std::string_view clock);

std::vector<std::string> render_top(const wire::stats_reply& s, const top_history& h, std::string_view socket,
                                    std::size_t cols);

}  // namespace xbuf::client
