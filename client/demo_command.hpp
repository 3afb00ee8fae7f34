// SPDX-License-Identifier: MIT
//
// demo_command.hpp - `xbuf demo`: a small job that keeps xbufd busy.
//
// Overview
//   Connects to the daemon as one client and, for a while, allocates
//   buffers that prefer GPU memory, touches them (validate), attaches a
//   dynamic importer to one in three and maps it, and frees the oldest past
//   24 - more than the simulated VRAM holds, so the daemon's status screen
//   shows evictions, moves, delayed frees and move_notify events as they
//   happen. For people watching `scripts/run.sh`, not a benchmark.
//
// Rules
//   - Releases the way an importer must: unmap, detach, then free. A buffer
//     freed while still attached stays alive (and counted in its domain) for
//     the attachment, but belongs to no client's row of `xbuf stat`; a demo
//     that left them would fill the host domains and end in refusals.
//   - At the end everything is released before the summary line
//     ("xbuf demo: N allocations, M refused, A attached and detached,
//     E move_notify events"), so a daemon that ran only demos holds nothing
//     of theirs afterwards.
#pragma once

#include <span>

namespace xbuf::client {

// xbuf demo [--socket PATH] [--seconds N] [--name NAME]. Exit 0 (refused
// allocations are counted, not failures), 2 for bad arguments, 1 when the
// daemon cannot be reached or a release (unmap, detach, free) fails.
// --help prints the usage to stdout and returns 0.
int demo_main(std::span<char*> args);

}  // namespace xbuf::client
