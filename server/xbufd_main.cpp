// SPDX-License-Identifier: MIT
//
// xbufd - the xbuf daemon: one arbiter of device memory for every job on a node.
//
//   xbufd [--socket PATH] [--socket-mode OCTAL] [--socket-group NAME]
//         [--backend auto|sim|cuda|hip] [--sim-devices N]
//         [--sim-vram BYTES] [--pinned BYTES] [--pageable BYTES]
//         [--quota-per-domain BYTES] [--max-buffers N] [--promote-interval MS]
//         [--max-connections N] [--max-queued-bytes BYTES]
//         [--frame-timeout SECONDS] [--max-fence-deadline SECONDS]
//         [--alloc-wait SECONDS] [--stats-interval SECONDS]
//         [--metrics HOST:PORT] [--quiet]
//   xbufd --help | --version
//
// BYTES takes a K/M/G suffix (powers of two). Without --socket the path is
// $XBUF_SOCKET, else /run/xbuf/xbuf.sock for root, else
// $XDG_RUNTIME_DIR/xbuf.sock (wire::default_socket_path()). Every number is
// parsed strictly: "2x" is an error that names the flag.
//
// Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), --help or
// --version; 1 when the backend, the socket or the --metrics port cannot
// be set up; 2 for a usage error (an unknown option, a missing or bad
// value, a --topology file that cannot be loaded). XBUF_VERSION is the
// CMake project version, defined for this file only (server/CMakeLists.txt).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "allocator/memory_manager.hpp"
#include "backends/select.hpp"
#include "core/whole_number.hpp"
#include "p2p/allocator_bridge.hpp"
#include "p2p/hwloc_loader.hpp"
#include "server/metrics_address.hpp"
#include "server/protocol.hpp"
#include "server/server.hpp"

namespace {

int usage(std::FILE* out) {
  std::fputs(
      "usage: xbufd [options]\n"
      "  --socket PATH           listening socket (default $XBUF_SOCKET, else /run/xbuf/xbuf.sock for root,\n"
      "                          else $XDG_RUNTIME_DIR/xbuf.sock); its directory must be writable only by\n"
      "                          this uid or root (a world-writable one only if given here and owned by this uid)\n"
      "  --socket-mode OCTAL     permissions of the socket file (default 0660)\n"
      "  --socket-group NAME     group of the socket file (default: the daemon's)\n"
      "  --backend NAME          auto (default), sim, cuda or hip\n"
      "  --sim-devices N         sim backend: number of devices (default 2)\n"
      "  --sim-vram BYTES        sim backend: VRAM per device (default 256M)\n"
      "  --pinned BYTES          pinned host domain capacity (default 256M)\n"
      "  --pageable BYTES        pageable host domain capacity (default 1G)\n"
      "  --topology FILE         hwloc XML of a machine: peer access follows its PCI tree, and\n"
      "                          sim GPUs are that machine's GPUs (default: this machine's tree)\n"
      "  --max-connections N     clients served at once; one more is refused (default 512)\n"
      "  --max-queued-bytes BYTES  replies and events queued to one client that it has not read;\n"
      "                          past it the client is disconnected (default 4M, at least 128K)\n"
      "  --frame-timeout SECS    hello, and every started frame, must arrive within SECS seconds\n"
      "                          (decimals allowed; default 10)\n"
      "  --quota-per-domain BYTES  what one client may place in one domain (default: no limit)\n"
      "  --max-buffers N         buffers one client may hold (default: no limit)\n"
      "  --promote-interval MS   an evicted buffer is promoted back at most once per MS\n"
      "                          milliseconds (validate; default 100)\n"
      "  --max-fence-deadline SECS  every client fence is signaled -ETIMEDOUT after at most SECS\n"
      "                          seconds, so no client stalls eviction or another client (default 10)\n"
      "  --alloc-wait SECS       how long an alloc waits for evictions to make room (default 30)\n"
      "  --stats-interval SECS   print a status screen to stdout every SECS seconds (0..86400;\n"
      "                          default 0: none)\n"
      "  --metrics HOST:PORT     serve Prometheus metrics at http://HOST:PORT/metrics; HOST is\n"
      "                          127.0.0.1 (or another 127.x.x.x), [::1] or localhost; PORT 0\n"
      "                          picks a free one, printed on stdout (default: off)\n"
      "  --quiet                 no connect/disconnect log\n"
      "  -h, --help              this text\n"
      "  --version               xbufd's version and protocol version\n"
      "BYTES: a whole number with an optional K, M or G (powers of two), e.g. 512M.\n"
      "Every number is checked: a bad one (\"2x\", \"abc\") is an error naming the flag.\n"
      "exit status: 0 after SIGTERM/SIGINT, --help or --version; 1 when the backend, the\n"
      "socket or the --metrics port cannot be set up; 2 usage error (unknown option, missing\n"
      "or bad value, a --topology file that cannot be loaded)\n",
      out);
  return out == stdout ? 0 : 2;
}

// "256M" -> 268435456. false on anything else (an empty number, another
// suffix, a value past 2^50 bytes).
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
  constexpr std::uint64_t max = 1ull << 50;
  std::uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
    if (v > max) return false;
  }
  if (v > max / mult) return false;
  *out = v * mult;
  return true;
}

// A whole decimal number in [min, max] (core/whole_number.hpp's rules).
bool parse_number(std::string_view s, std::uint64_t min, std::uint64_t max, std::uint64_t* out) {
  auto n = xbuf::parse_whole_number(s, min, max);
  if (n) *out = *n;
  return n.has_value();
}

// "1.5" -> 1500 ms; at most three decimals; false on anything else.
bool parse_seconds_ms(std::string_view s, std::uint64_t* out_ms) {
  const auto dot = s.find('.');
  std::uint64_t whole = 0;
  std::uint64_t frac = 0;
  const std::string_view w = s.substr(0, dot);
  if (!parse_number(w, 0, 1'000'000, &whole)) return false;
  if (dot != std::string_view::npos) {
    std::string_view f = s.substr(dot + 1);
    if (f.empty() || f.size() > 3) return false;
    if (!parse_number(f, 0, 999, &frac)) return false;
    for (std::size_t i = f.size(); i < 3; ++i) frac *= 10;
  }
  *out_ms = whole * 1000 + frac;
  return true;
}

// "0660" or "660" -> 0660; only octal digits, at most 0777.
bool parse_mode(std::string_view s, unsigned* out) {
  if (s.empty() || s.size() > 4) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '7') return false;
    v = v * 8 + static_cast<unsigned>(c - '0');
  }
  if (v > 0777) return false;
  *out = v;
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
  std::uint64_t domain_quota = 0;  // per client per domain; 0 = none
  std::uint64_t max_buffers = 0;   // per client; 0 = none
  std::chrono::milliseconds promote_interval{100};
  std::string topology_xml;  // empty: the live machine's topology
};

// Reads flag values from argv; every bad value exits 2 naming the flag and
// the value ("--max-buffers: '2x' is not a whole number in 1..100000000").
class arg_reader {
 public:
  arg_reader(int argc, char** argv) : argc_(argc), argv_(argv) {}
  bool next() { return ++i_ < argc_; }
  std::string_view current() const { return argv_[i_]; }

  const char* value(std::string_view flag) {
    if (i_ + 1 >= argc_) bad(flag, "needs a value");
    return argv_[++i_];
  }
  std::uint64_t bytes(std::string_view flag, std::uint64_t min = 1) {
    const char* v = value(flag);
    std::uint64_t b = 0;
    if (!parse_bytes(v, &b) || b == 0) bad(flag, quoted(v) + " is not a byte count (e.g. 512M)");
    if (b < min) bad(flag, quoted(v) + " is less than " + std::to_string(min) + " bytes");
    return b;
  }
  std::uint64_t number(std::string_view flag, std::uint64_t min, std::uint64_t max) {
    const char* v = value(flag);
    std::uint64_t n = 0;
    if (!parse_number(v, min, max, &n)) {
      bad(flag, quoted(v) + " is not a whole number in " + std::to_string(min) + ".." + std::to_string(max));
    }
    return n;
  }
  std::chrono::milliseconds seconds(std::string_view flag) {
    const char* v = value(flag);
    std::uint64_t ms = 0;
    if (!parse_seconds_ms(v, &ms) || ms == 0 || ms > 3'600'000) {
      bad(flag, quoted(v) + " is not a number of seconds in 0.001..3600");
    }
    return std::chrono::milliseconds(ms);
  }
  unsigned mode(std::string_view flag) {
    const char* v = value(flag);
    unsigned m = 0;
    if (!parse_mode(v, &m)) bad(flag, quoted(v) + " is not an octal mode in 0..0777 (e.g. 0660)");
    return m;
  }
  [[noreturn]] static void bad(std::string_view flag, const std::string& why) {
    std::fprintf(stderr, "xbufd: %.*s: %s\n", static_cast<int>(flag.size()), flag.data(), why.c_str());
    std::exit(2);
  }

 private:
  static std::string quoted(const char* v) { return "'" + std::string(v) + "'"; }
  int argc_;
  char** argv_;
  int i_ = 0;
};

// The socket's and the daemon's limits. false: not one of these flags.
bool server_flag(arg_reader& r, std::string_view a, xbuf::server::server_config& c) {
  if (a == "--socket") {
    c.socket_path = r.value(a);
    c.socket_path_explicit = true;
  } else if (a == "--socket-mode") {
    c.socket_mode = r.mode(a);
  } else if (a == "--socket-group") {
    c.socket_group = r.value(a);
    if (c.socket_group.empty()) arg_reader::bad(a, "empty group name");
  } else if (a == "--max-connections") {
    c.max_connections = static_cast<std::size_t>(r.number(a, 1, 1'000'000));
  } else if (a == "--max-queued-bytes") {
    c.max_queued_bytes = static_cast<std::size_t>(r.bytes(a, 128u << 10));  // two full frames
  } else if (a == "--frame-timeout") {
    c.frame_timeout = r.seconds(a);
  } else if (a == "--max-fence-deadline") {
    c.max_fence_deadline = r.seconds(a);
  } else if (a == "--alloc-wait") {
    c.alloc_wait = r.seconds(a);
  } else if (a == "--stats-interval") {
    c.stats_interval_s = static_cast<int>(r.number(a, 0, 86'400));
  } else if (a == "--metrics") {
    auto where = xbuf::server::parse_metrics_address(r.value(a));
    if (!where) arg_reader::bad(a, where.err().message);
    c.metrics = std::move(*where);
  } else if (a == "--quiet") {
    c.log = false;
  } else {
    return false;
  }
  return true;
}

// The backend and the memory manager. false: not one of these flags.
bool memory_flag(arg_reader& r, std::string_view a, options& o) {
  if (a == "--backend") {
    o.backend_name = r.value(a);
  } else if (a == "--sim-devices") {
    o.sim_devices = static_cast<int>(r.number(a, 1, 64));
  } else if (a == "--sim-vram") {
    o.sim_vram = r.bytes(a);
  } else if (a == "--pinned") {
    o.pinned = r.bytes(a);
  } else if (a == "--pageable") {
    o.pageable = r.bytes(a);
  } else if (a == "--quota-per-domain") {
    o.domain_quota = r.bytes(a);
  } else if (a == "--max-buffers") {
    o.max_buffers = r.number(a, 1, 100'000'000);
  } else if (a == "--promote-interval") {
    o.promote_interval = std::chrono::milliseconds(r.number(a, 0, 3'600'000));
  } else if (a == "--topology") {
    o.topology_xml = r.value(a);
  } else {
    return false;
  }
  return true;
}

// Fills `o` from argv. Returns the exit code when xbufd should stop here
// (--help, --version, an unknown option), nothing when it should go on.
// Exits with 2 on an option that lacks its value or has a bad one.
std::optional<int> parse_options(int argc, char** argv, options& o) {
  o.server.socket_path = xbuf::wire::default_socket_path();
  // XBUF_SOCKET names the path as explicitly as --socket does.
  if (const char* e = std::getenv("XBUF_SOCKET"); e != nullptr && *e != '\0') o.server.socket_path_explicit = true;
  arg_reader r(argc, argv);
  while (r.next()) {
    const std::string_view a = r.current();
    if (a == "--help" || a == "-h") return usage(stdout);
    if (a == "--version" || a == "-V") {
      std::printf("xbufd %s (protocol %u)\n", XBUF_VERSION, unsigned{xbuf::wire::protocol_version});
      return 0;
    }
    if (server_flag(r, a, o.server) || memory_flag(r, a, o)) continue;
    std::fprintf(stderr, "xbufd: unknown option '%.*s'\n", static_cast<int>(a.size()), a.data());
    return usage(stderr);
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
  mcfg.domain_quota = o.domain_quota;
  mcfg.max_buffers_per_owner = static_cast<std::size_t>(o.max_buffers);
  mcfg.promote_interval = o.promote_interval;
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
  // Before the backend opens anything: sessions, buffers and exports all
  // cost descriptors, and the soft default is often a fraction of the hard.
  if (auto lim = xbuf::server::raise_fd_limit(); !lim) {
    std::fprintf(stderr, "xbufd: %s (going on with the current limit)\n", lim.err().describe().c_str());
  } else if (lim->now != lim->before) {
    std::fprintf(stderr, "xbufd: fd limit raised from %llu to %llu\n", static_cast<unsigned long long>(lim->before),
                 static_cast<unsigned long long>(lim->now));
  }
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
