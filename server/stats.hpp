// SPDX-License-Identifier: MIT
//
// stats.hpp - the stats reply (what `xbuf stat` shows) and the daemon's
// periodic status screen.
//
// Overview
//   collect_stats() assembles wire::stats_reply from the manager's
//   manager_stats and buffer list plus the connected clients: per domain,
//   per client (bytes and buffers it holds, joined by owner id), per buffer,
//   and the counters. The buffer list is cut to fit one frame
//   (buffers_truncated says so).
//
// Rules
//   - Context: calls memory_manager::stats() and buffers(), which take the
//     manager's mutex and may block: never on an io_context thread; run it
//     on the worker pool. Allocates.
//   - Locking: takes the registry's mutex after the manager's calls
//     returned, never both at once.
#pragma once

#include <cstdio>

#include "allocator/memory_manager.hpp"
#include "server/client_registry.hpp"
#include "server/protocol.hpp"

namespace xbuf::server {

// Never fails: stats are read, not computed under any condition that can.
wire::stats_reply collect_stats(memory_manager& mm, const client_registry& clients);

// The --stats-interval screen: one header line, one line per domain and per
// client, the counters. Context: writes to `out` and flushes it.
void print_status(std::FILE* out, const wire::stats_reply& s);

}  // namespace xbuf::server
