// SPDX-License-Identifier: MIT
//
// xbuf - the command-line tool. Subcommands:
//   xbuf topo [--xml FILE] [--json]   PCI/NUMA topology and peer-to-peer matrix
//   xbuf stat [--socket PATH]         what the daemon holds (per domain, client, buffer)
//   xbuf demo [--socket PATH]         a small job that keeps the daemon busy, to watch
#include <cstdio>
#include <span>
#include <string_view>

#include "client/demo_command.hpp"
#include "client/stat_command.hpp"
#include "p2p/topo_command.hpp"

namespace {

int usage(std::FILE* out) {
  std::fputs(
      "usage: xbuf <command> [options]\n"
      "commands:\n"
      "  topo [--xml FILE] [--json]   topology and peer-to-peer matrix\n"
      "  stat [--socket PATH]         what xbufd holds: domains, clients, buffers\n"
      "  demo [--socket PATH] [--seconds N]  a job that keeps xbufd busy (to watch)\n"
      "  help                         this text\n",
      out);
  return out == stdout ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage(stderr);
  const std::string_view cmd = argv[1];
  if (cmd == "help" || cmd == "--help" || cmd == "-h") return usage(stdout);
  if (cmd == "topo") return xbuf::p2p::topo_main(std::span<char*>(argv + 2, argv + argc));
  if (cmd == "stat") return xbuf::client::stat_main(std::span<char*>(argv + 2, argv + argc));
  if (cmd == "demo") return xbuf::client::demo_main(std::span<char*>(argv + 2, argv + argc));
  std::fprintf(stderr, "xbuf: unknown command '%s'\n", argv[1]);
  return usage(stderr);
}
