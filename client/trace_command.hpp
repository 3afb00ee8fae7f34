// SPDX-License-Identifier: MIT
//
// trace_command.hpp - `xbuf trace`: xbufd's memory timeline, to a file.
//
// Overview
//   Connects as "xbuf-trace", reads every memory event the daemon still
//   holds (its ring: allocations, frees, evictions, promotions, migrations)
//   that this client may see, and writes them as Chrome trace-event JSON
//   (--out FILE.json, for Perfetto / chrome://tracing) and/or as a
//   self-contained HTML page that plots each domain's occupancy over time
//   stacked by client (--html FILE.html). client/trace_format.hpp has both
//   shapes.
//
// Rules
//   - Reads until the daemon has nothing newer than what it read (events
//     that arrive meanwhile are in the next trace). Exit codes as
//     client/cli_args.hpp says; a file that cannot be written is exit 1.
#pragma once

#include <span>

namespace xbuf::client {

// `xbuf trace [--socket PATH] [--out FILE.json] [--html FILE.html]` (at
// least one of the two). Returns the process exit code.
int trace_main(std::span<char*> args);

}  // namespace xbuf::client
