// SPDX-License-Identifier: MIT
//
// xbufd - the xbuf daemon: one arbiter of device memory for every job on a node.
//
//   xbufd [--socket PATH] [--backend auto|sim|cuda|hip] [--sim-devices N]
//         [--sim-vram BYTES] [--pinned BYTES] [--pageable BYTES]
//         [--stats-interval SECONDS] [--quiet]
//
// BYTES takes a K/M/G suffix (powers of two). Without --socket the path is
// $XDG_RUNTIME_DIR/xbuf.sock, else /tmp/xbuf-$UID.sock.
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "allocator/memory_manager.hpp"
#include "backends/select.hpp"
#include "p2p/allocator_bridge.hpp"
#include "p2p/hwloc_loader.hpp"
#include "server/protocol.hpp"
#include "server/server.hpp"

namespace {

int usage(std::FILE* out) {
  std::fputs(
      "usage: xbufd [options]\n"
      "  --socket PATH           listening socket (default $XDG_RUNTIME_DIR/xbuf.sock or /tmp/xbuf-$UID.sock)\n"
      "  --backend NAME          auto (default), sim, cuda or hip\n"
      "  --sim-devices N         sim backend: number of devices (default 2)\n"
      "  --sim-vram BYTES        sim backend: VRAM per device (default 256M)\n"
      "  --pinned BYTES          pinned host domain capacity (default 256M)\n"
      "  --pageable BYTES        pageable host domain capacity (default 1G)\n"
      "  --topology FILE         hwloc XML of a machine: peer access follows its PCI tree, and\n"
      "                          sim GPUs are that machine's GPUs (default: this machine's tree)\n"
      "  --stats-interval SECS   print a status screen to stdout every SECS seconds\n"
      "  --quiet                 no connect/disconnect log\n",
      out);
  return out == stdout ? 0 : 2;
}

// "256M" -> 268435456. false on anything else.
bool parse_bytes(std::string_view s, std::uint64_t* out) {
  if (s.empty()) return false;
  std::uint64_t mult = 1;
  switch (s.back()) {
    case 'K': case 'k': mult = 1ull << 10; break;
    case 'M': case 'm': mult = 1ull << 20; break;
    case 'G': case 'g': mult = 1ull << 30; break;
    default: break;
  }
  if (mult != 1) s.remove_suffix(1);
  if (s.empty()) return false;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (v > (1ull << 50)) return false;
  }
  *out = v * mult;
  return true;
}

// Everything the command line sets.
struct options {
  xbuf::server::server_config server;
  std::string backend_name = "auto";
  int sim_devices = 2;
  std::uint64_t sim_vram = 256ull << 20;
  std::uint64_t pinned = 256ull << 20;
  std::uint64_t pageable = 1ull << 30;
  std::string topology_xml;  // empty: the live machine's topology
};

// Fills `o` from argv. Returns the exit code when xbufd should stop here
// (--help, a bad option), nothing when it should go on. Exits with 2 on an
// option that lacks its value or has a bad byte count.
std::optional<int> parse_options(int argc, char** argv, options& o) {
  o.server.socket_path = xbuf::wire::default_socket_path();
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&](std::string_view flag) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "xbufd: %.*s needs a value\n", static_cast<int>(flag.size()), flag.data());
        std::exit(2);
      }
      return argv[++i];
    };
    auto bytes = [&](std::string_view flag, std::uint64_t* out) {
      const char* v = value(flag);
      if (!parse_bytes(v, out) || *out == 0) {
        std::fprintf(stderr, "xbufd: %.*s: '%s' is not a byte count (e.g. 512M)\n",
                     static_cast<int>(flag.size()), flag.data(), v);
        std::exit(2);
      }
    };
    if (a == "--help" || a == "-h") return usage(stdout);
    if (a == "--socket") {
      o.server.socket_path = value(a);
    } else if (a == "--backend") {
      o.backend_name = value(a);
    } else if (a == "--sim-devices") {
      o.sim_devices = std::atoi(value(a));
      if (o.sim_devices < 1 || o.sim_devices > 64) {
        std::fprintf(stderr, "xbufd: --sim-devices must be 1..64\n");
        return 2;
      }
    } else if (a == "--sim-vram") {
      bytes(a, &o.sim_vram);
    } else if (a == "--pinned") {
      bytes(a, &o.pinned);
    } else if (a == "--pageable") {
      bytes(a, &o.pageable);
    } else if (a == "--topology") {
      o.topology_xml = value(a);
    } else if (a == "--stats-interval") {
      o.server.stats_interval_s = std::atoi(value(a));
    } else if (a == "--quiet") {
      o.server.log = false;
    } else {
      std::fprintf(stderr, "xbufd: unknown option '%s'\n", argv[i]);
      return usage(stderr);
    }
  }
  return std::nullopt;
}

// The PCI topology decides peer access (with the runtime's veto). A saved
// one also places the simulated GPUs where that machine's GPUs are.
// Returns false (after saying why) when --topology cannot be loaded; a
// missing live topology only costs the topology's say in peer access.
bool load_topology(const options& o, std::shared_ptr<const xbuf::p2p::topology>* topo) {
  auto loaded = o.topology_xml.empty() ? xbuf::p2p::load_topology_live()
                                       : xbuf::p2p::load_topology_xml(o.topology_xml);
  if (loaded) {
    *topo = std::make_shared<const xbuf::p2p::topology>(std::move(*loaded));
  } else if (!o.topology_xml.empty()) {
    std::fprintf(stderr, "xbufd: --topology: %s\n", loaded.err().describe().c_str());
    return false;
  } else {
    std::fprintf(stderr, "xbufd: no live topology (%s): peer access only where the runtime says\n",
                 loaded.err().describe().c_str());
  }
  return true;
}

// The backend the options ask for, or the exit code (2: bad --topology,
// 1: that backend cannot run here) after saying why.
std::variant<xbuf::selected_backend, int> choose_backend(const options& o, xbuf::backend_choice choice,
                                                         const std::shared_ptr<const xbuf::p2p::topology>& topo) {
  xbuf::backend_selection_config bcfg;
  bcfg.choice = choice;
  bcfg.sim = xbuf::make_sim_config(o.sim_devices, static_cast<std::size_t>(o.sim_vram));
  if (!o.topology_xml.empty()) {
    auto sim = xbuf::p2p::sim_config_from_topology(*topo, static_cast<std::size_t>(o.sim_vram));
    if (!sim) {
      std::fprintf(stderr, "xbufd: --topology: %s\n", sim.err().describe().c_str());
      return 2;
    }
    bcfg.sim = std::move(*sim);
  }
  auto selected = xbuf::select_backend(bcfg);
  if (!selected) {
    std::fprintf(stderr, "xbufd: %s\n", selected.err().describe().c_str());
    return 1;
  }
  for (const auto& note : selected->notes) std::fprintf(stderr, "xbufd: %s\n", note.c_str());
  std::fprintf(stderr, "xbufd: backend %.*s with %zu devices\n",
               static_cast<int>(selected->chosen->name().size()), selected->chosen->name().data(),
               selected->chosen->devices().size());
  return std::move(*selected);
}

// Builds the manager over `b` and serves it until a signal.
int serve(const options& o, xbuf::backend& b, const std::shared_ptr<const xbuf::p2p::topology>& topo) {
  xbuf::manager_config mcfg;
  mcfg.device_backend = &b;
  mcfg.pinned_capacity = o.pinned;
  mcfg.pageable_capacity = o.pageable;
  mcfg.pinned_limit = o.pinned;
  if (topo) {
    mcfg.peer_policy = xbuf::p2p::make_peer_policy(topo, b);
    std::fprintf(stderr, "xbufd: peer access decided by the topology of %s\n", topo->source().c_str());
  }
  auto mm = xbuf::memory_manager::create(mcfg);
  if (!mm) {
    std::fprintf(stderr, "xbufd: %s\n", mm.err().describe().c_str());
    return 1;
  }
  auto st = xbuf::server::run_server(**mm, o.server);
  mm->reset();  // before the backend it uses
  if (!st) {
    std::fprintf(stderr, "xbufd: %s\n", st.err().describe().c_str());
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  if (auto code = parse_options(argc, argv, o)) return *code;
  auto choice = xbuf::parse_backend_choice(o.backend_name);
  if (!choice) {
    std::fprintf(stderr, "xbufd: %s\n", choice.err().describe().c_str());
    return 2;
  }
  std::shared_ptr<const xbuf::p2p::topology> topo;
  if (!load_topology(o, &topo)) return 2;
  auto selected = choose_backend(o, *choice, topo);
  if (auto* code = std::get_if<int>(&selected)) return *code;
  return serve(o, *std::get<xbuf::selected_backend>(selected).chosen, topo);
}
