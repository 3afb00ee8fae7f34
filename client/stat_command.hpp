// SPDX-License-Identifier: MIT
//
// stat_command.hpp - `xbuf stat`: what the daemon holds (the debugfs analog).
//
// Overview
//   Connects to xbufd as a client named "xbuf-stat", asks for stats and
//   prints, per domain (used / capacity, buffers, delayed frees), per client
//   (pid, uid, name, bytes) and per buffer (owner, size, placement,
//   attachments, pins, pending fences), then the manager's counters.
//   The daemon decides what the asker sees: a tenant gets the clients of its
//   own uid and their buffers, with per-domain totals (the header line says
//   so), the operator (root or the daemon's uid) everything. Lists cut to fit one
//   reply end with how many rows were left out.
//
//   --json prints the same reply as one JSON object instead, with
//   "schema":"xbuf.stat/1" first (client/stats_json.hpp has the shape).
//
// Rules
//   - The table fits 100 columns (names longer than their column push the
//     row out); byte counts are in binary units (core/units.hpp), counters
//     are labelled for people, three to a line.
//   - Prints to stdout; errors to stderr with the daemon's message; exit
//     codes as client/cli_args.hpp says.
#pragma once

#include <span>

namespace xbuf::client {

// `xbuf stat [--socket PATH] [--json]`. Returns the process exit code: 0,
// 1 when the daemon cannot be reached or answers with an error, 2 for bad
// arguments; --help prints the usage to stdout and returns 0.
int stat_main(std::span<char*> args);

}  // namespace xbuf::client
