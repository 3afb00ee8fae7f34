// SPDX-License-Identifier: MIT
//
// topo_command.hpp - `xbuf topo`: the machine's PCI/NUMA topology and its
// peer-to-peer matrices, from the live machine or a saved hwloc XML.
//
// Overview
//   xbuf topo [--xml FILE] [--json] [--verbose]
//     --xml FILE  read a topology saved by `lstopo --of xml` instead of this machine
//     --json      print the machine-readable report (topo_format.hpp) only
//     --verbose   print the p2pdma reason of every pair, however many
//
// Rules
//   - Exit status, as every xbuf command's (client/cli_args.hpp): 0 on
//     success, including a topology without GPUs or without PCI objects
//     (the report says so), and for --help (on `out`); 1 for a missing,
//     unreadable or malformed XML (the message names the file and what is
//     wrong) or a live machine that cannot be discovered; 2 for a bad
//     command line.
//   - The report goes to `out`, errors and notes to `err`.
#pragma once

#include <cstdio>
#include <span>

namespace xbuf::p2p {

// `args`: the arguments after the word "topo". Context: blocks on file and
// sysfs I/O; allocates. Not reentrant (libpciaccess global state).
int topo_main(std::span<char*> args, std::FILE* out = stdout, std::FILE* err = stderr);

}  // namespace xbuf::p2p
