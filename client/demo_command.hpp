// SPDX-License-Identifier: MIT
//
// demo_command.hpp - `xbuf demo`: a small job that keeps xbufd busy.
//
// Overview
//   Connects to the daemon as one client and, for a while, allocates
//   buffers that prefer GPU memory, touches them (validate), attaches a
//   dynamic importer and frees old ones - more than the simulated VRAM
//   holds, so the daemon's status screen shows evictions, moves, delayed
//   frees and move_notify events as they happen. For people watching
//   `scripts/run.sh`, not a benchmark.
#pragma once

#include <span>

namespace xbuf::client {

// xbuf demo [--socket PATH] [--seconds N] [--name NAME]. Exit 0, or 2 for
// bad arguments, 1 when the daemon cannot be reached or refuses.
int demo_main(std::span<char*> args);

}  // namespace xbuf::client
