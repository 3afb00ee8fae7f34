// SPDX-License-Identifier: MIT
//
// trace_format.hpp - what `xbuf trace` writes: xbufd's memory events as
// Chrome trace-event JSON (Perfetto and chrome://tracing open it), and a
// self-contained HTML page that plots each domain's occupancy over time,
// stacked by client, with the moves marked.
//
// Overview
//   to_chrome_trace(): {"displayTimeUnit":"ms","otherData":{...},
//   "traceEvents":[...]} with
//     - a thread per domain (pid 1 "xbufd", tid = domain index + 1, named
//       by "M" thread_name events);
//     - an instant event ("ph":"i") per allocation, free and move, on the
//       domain it touched (a move on the one it left), cat alloc / free /
//       move, args: buffer, owner, client, bytes, from, to, notified;
//     - a counter event ("ph":"C", name = the domain) after each change of
//       a domain: the bytes every client holds there, one arg per client.
//   "otherData" carries "schema":"xbuf.trace/1", the backend, the domains
//   (name, capacity) and how many events the daemon's ring had dropped.
//   Occupancy is rebuilt from the events alone, so a window that starts
//   after some allocations shows only what happened in it (never below 0).
//
//   to_html(): one page with the JSON above inside a <script> element (any
//   "</" escaped) and a script that draws one SVG per domain (data-domain),
//   one path per client (data-client) and one line per move (class
//   "move"), and marks <body data-rendered="N domains"> when done. It
//   loads nothing from the network; names reach the page as text and
//   attribute values only (never as markup).
//
// Rules
//   - Pure: no I/O; allocates.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "server/protocol.hpp"

namespace xbuf::client {

inline constexpr std::string_view trace_schema = "xbuf.trace/1";

struct trace_input {
  std::string backend;
  std::vector<wire::stat_domain> domains;       // the stats reply's, in index order
  std::map<std::uint32_t, std::string> names;   // owner -> client name, where known
  std::vector<wire::trace_event> events;        // oldest first
  std::uint64_t dropped = 0;
};

std::string to_chrome_trace(const trace_input& in);
std::string to_html(const trace_input& in);

}  // namespace xbuf::client
