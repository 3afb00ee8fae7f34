// SPDX-License-Identifier: MIT
//
// xbuf - the command-line tool. Subcommands:
//   xbuf topo [--xml FILE] [--json] [--verbose]   PCI/NUMA topology and peer-to-peer matrix
//   xbuf stat [--socket PATH] [--json]            what the daemon holds (per domain, client,
//   buffer) xbuf demo [--socket PATH] [--seconds N] [--name NAME]   a job that keeps the daemon
//   busy, to watch
//
// Rules
//   - Every subcommand takes -h/--help (stdout, exit 0) and uses the exit
//     codes of client/cli_args.hpp: 0 ok, 1 runtime error, 2 usage.
//   - XBUF_VERSION is the CMake project version, defined for this file only
//     (client/CMakeLists.txt).
#include <cstdio>
#include <span>
#include <string_view>

#include "client/cli_args.hpp"
#include "client/demo_command.hpp"
#include "client/stat_command.hpp"
#include "client/top_command.hpp"
#include "client/trace_command.hpp"
#include "p2p/topo_command.hpp"
#include "server/protocol.hpp"

namespace {

namespace cli = xbuf::client::cli;

// Every subcommand's options, so one screen says all xbuf takes.
void help(std::FILE* out) {
  std::fprintf(
      out,
      "usage: xbuf <command> [options]     (xbuf <command> --help for one command)\n"
      "       xbuf --help | --version\n\n"
      "commands:\n"
      "  topo [--xml FILE] [--json] [--verbose]\n"
      "        the PCI/NUMA topology and peer-to-peer matrices of this machine, or of\n"
      "        a saved one (lstopo --of xml); --json for tools, --verbose for every reason\n"
      "  stat [--socket PATH] [--json]\n"
      "        what xbufd holds: domains, clients, buffers, counters\n"
      "  top [--socket PATH] [--interval SECS] [--seconds N]\n"
      "        a live view of xbufd (domains, clients, what changed), redrawn every\n"
      "        SECS seconds (default 1); q quits\n"
      "  trace [--socket PATH] [--out FILE.json] [--html FILE.html]\n"
      "        the memory timeline (allocations, frees, moves) as Chrome trace JSON\n"
      "        and/or a self-contained HTML page plotting each domain's occupancy\n"
      "  demo [--socket PATH] [--seconds N] [--name NAME]\n"
      "        a job that keeps xbufd busy for N seconds (default 30), to watch\n"
      "  help  this text\n\n"
      "The socket (stat, top, trace, demo): --socket PATH, else $XBUF_SOCKET, else\n"
      "/run/xbuf/xbuf.sock for root, else $XDG_RUNTIME_DIR/xbuf.sock.\n\n"
      "%s",
      cli::exit_codes_help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    help(stderr);
    return cli::exit_usage;
  }
  const std::string_view cmd = argv[1];
  const std::span<char*> rest(argv + 2, argv + argc);
  if (cmd == "help" || cmd == "--help" || cmd == "-h") {
    help(stdout);
    return cli::exit_ok;
  }
  if (cmd == "--version" || cmd == "-V") {
    std::printf("xbuf %s (protocol %u)\n", XBUF_VERSION, unsigned{xbuf::wire::protocol_version});
    return cli::exit_ok;
  }
  if (cmd == "topo") return xbuf::p2p::topo_main(rest);
  if (cmd == "stat") return xbuf::client::stat_main(rest);
  if (cmd == "top") return xbuf::client::top_main(rest);
  if (cmd == "trace") return xbuf::client::trace_main(rest);
  if (cmd == "demo") return xbuf::client::demo_main(rest);
  std::fprintf(stderr, "xbuf: unknown command '%s'\n", argv[1]);
  help(stderr);
  return cli::exit_usage;
}
