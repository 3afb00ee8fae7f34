// SPDX-License-Identifier: MIT
#include "p2p/topo_command.hpp"

#include <string>
#include <string_view>

#include "p2p/hwloc_loader.hpp"
#include "p2p/topo_format.hpp"

namespace xbuf::p2p {

namespace {

constexpr const char* usage_line = "usage: xbuf topo [--xml FILE] [--json] [--verbose]\n";

int usage(std::FILE* f) {
  std::fputs(usage_line, f);
  return 2;
}

// The exit codes are every xbuf command's (client/cli_args.hpp), spelled
// out here because p2p/ does not include client/.
void help(std::FILE* f) {
  std::fputs(usage_line, f);
  std::fputs(
      "The PCI/NUMA topology and the peer-to-peer matrices (path, PCIe-only, p2pdma\n"
      "verdicts, CPU and NUMA affinity) of this machine or of a saved one.\n\n"
      "  --xml FILE      a topology saved by `lstopo --of xml` instead of this machine\n"
      "  --json          the machine-readable report only (\"schema\":\"xbuf.topo/1\")\n"
      "  -v, --verbose   the p2pdma reason of every pair, however many\n"
      "  -h, --help      this text\n\n"
      "exit status: 0 ok (a topology without GPUs included), 1 runtime error (the XML\n"
      "cannot be read or is not a topology, the live machine cannot be discovered),\n"
      "2 usage error (unknown option, missing value)\n",
      f);
}

}  // namespace

int topo_main(std::span<char*> args, std::FILE* out, std::FILE* err) {
  std::string xml;
  bool json = false, verbose = false, have_xml = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i] != nullptr ? args[i] : "";
    if (a == "--xml") {
      if (i + 1 >= args.size() || args[i + 1] == nullptr) {
        std::fputs("xbuf topo: --xml needs a file name\n", err);
        return usage(err);
      }
      xml = args[++i];
      have_xml = true;
    } else if (a.substr(0, 6) == "--xml=") {
      xml = std::string(a.substr(6));
      have_xml = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--verbose" || a == "-v") {
      verbose = true;
    } else if (a == "--help" || a == "-h") {
      help(out);
      return 0;
    } else {
      std::fprintf(err, "xbuf topo: unknown option '%s'\n", std::string(a).c_str());
      return usage(err);
    }
  }

  std::string pci_note;
  auto topo = have_xml ? load_topology_xml(xml) : load_topology_live(&pci_note);
  if (!topo) {
    std::fprintf(err, "xbuf topo: %s\n", topo.err().describe().c_str());
    return 1;
  }
  const topo_report report = build_report(*topo);
  if (json) {
    if (topo->functions().empty()) {
      std::fprintf(err, "xbuf topo: no PCI objects in topology '%s'\n", topo->source().c_str());
    }
    std::fputs(format_json(*topo, report).c_str(), out);
    return 0;
  }
  if (!pci_note.empty()) std::fprintf(out, "%s\n", pci_note.c_str());
  std::fputs(format_text(*topo, report, verbose).c_str(), out);
  return 0;
}

}  // namespace xbuf::p2p
