// SPDX-License-Identifier: MIT
//
// top_command.hpp - `xbuf top`: a live view of the daemon (ncurses).
//
// Overview
//   Connects to xbufd as "xbuf-top", asks for stats every --interval
//   seconds and redraws the terminal with client/top_view.hpp's screen:
//   domains with bars, clients, and what changed between refreshes. q (or
//   Ctrl-C) quits. The daemon decides what it shows, as for `xbuf stat`.
//
// Rules
//   - The terminal is restored however the loop ends (an error, q, a
//     signal that ends the process is not caught: ncurses' own handler
//     restores it). Errors go to stderr after the screen is restored.
#pragma once

#include <span>

namespace xbuf::client {

// `xbuf top [--socket PATH] [--interval SECS] [--seconds N]`. Returns the
// exit code: 0 (q, or --seconds passed), 1 (the daemon cannot be reached or went away; no terminal), 2 (bad
// arguments); --help prints the usage to stdout and returns 0.
int top_main(std::span<char*> args);

}  // namespace xbuf::client
