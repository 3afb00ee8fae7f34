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
//         [--metrics HOST:PORT] [--quiet] [--config FILE]
//   xbufd --help | --version
//
// BYTES takes a K/M/G suffix (powers of two). Without --socket the path is
// $XBUF_SOCKET, else /run/xbuf/xbuf.sock for root, else
// $XDG_RUNTIME_DIR/xbuf.sock (wire::default_socket_path()). Every number is
// parsed strictly: "2x" is an error that names the flag.
//
// Before the flags, xbufd reads /etc/xbuf/xbufd.toml if it exists, or
// --config FILE (which must exist): one TOML key per flag, spelled like the
// flag without its dashes (server/config_file.hpp). Its values go through
// the same parsers as the flags', and a flag overrides the file.
//
// Exit status: 0 after a clean shutdown (SIGTERM/SIGINT), --help or
// --version; 1 when the backend, the socket or the --metrics port cannot
// be set up; 2 for a usage error (an unknown option, a missing or bad
// value, a config file that cannot be used, a --topology file that cannot
// be loaded). XBUF_VERSION is the
// CMake project version, defined for this file only (server/CMakeLists.txt).
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/select.hpp"
#include "core/whole_number.hpp"
#include "p2p/allocator_bridge.hpp"
#include "p2p/hwloc_loader.hpp"
#include "server/config_file.hpp"
#include "server/log.hpp"
#include "server/metrics_address.hpp"
#include "server/protocol.hpp"
#include "server/server.hpp"
#include "server/systemd.hpp"

namespace {

using lv = xbuf::server::log_level;

// One "xbufd: ..." line on stderr, with its journald priority when stderr
// is the journal (server/log.hpp).
__attribute__((format(printf, 2, 3))) void say(lv level, const char* fmt, ...) {
  std::va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "%sxbufd: ", xbuf::server::journal_prefix(level));
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
}

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
      "  --pageable BYTES        pageable host memory capacity (default 1G), split between\n"
      "                          NUMA nodes where there are several (a domain per node)\n"
      "  --topology FILE         hwloc XML of a machine: peer access follows its PCI tree, and\n"
      "                          sim GPUs and NUMA nodes are that machine's (default: this machine's tree)\n"
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
      "  --config FILE           read settings from FILE (TOML), which must exist (default: read\n"
      "                          /etc/xbuf/xbufd.toml if it exists); keys are the flags without\n"
      "                          \"--\" (max-connections = 64, pinned = \"512M\", quiet = true);\n"
      "                          a flag given here overrides the file\n"
      "  -h, --help              this text\n"
      "  --version               xbufd's version and protocol version\n"
      "BYTES: a whole number with an optional K, M or G (powers of two), e.g. 512M.\n"
      "Every number is checked: a bad one (\"2x\", \"abc\") is an error naming the flag.\n"
      "exit status: 0 after SIGTERM/SIGINT, --help or --version; 1 when the backend, the\n"
      "socket or the --metrics port cannot be set up; 2 usage error (unknown option, missing\n"
      "or bad value, a config file that cannot be used, a --topology file that cannot be loaded)\n",
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

// Everything the command line and the config file set.
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

struct flag_def;

// One flag with its value, from the command line or from the config file.
// Both go through the same parsers below, so "512M" or "2x" means the same
// in either place; only the error's prefix says where the value was.
struct setting {
  const flag_def* def = nullptr;
  std::string value;   // "" for a switch
  std::string origin;  // "" on the command line; "FILE:LINE" from the config file
};

// What a flag does with its (parsed) value.
using apply_fn = void (*)(const setting&, options&);

// A flag of xbufd, and the config file's key for it (the same name).
struct flag_def {
  xbuf::server::config_key key;
  apply_fn apply;
};

// Exits 2 naming the flag, or the file, line and key, and why:
// "xbufd: --max-buffers: '2x' is not ..." or "xbufd: FILE:3: max-buffers: '2x' is not ...".
[[noreturn]] void bad(const setting& s, const std::string& why) {
  const std::string_view name = s.def->key.name;
  if (s.origin.empty()) {
    say(lv::error, "--%.*s: %s\n", static_cast<int>(name.size()), name.data(), why.c_str());
  } else {
    say(lv::error, "%s: %.*s: %s\n", s.origin.c_str(), static_cast<int>(name.size()), name.data(),
                 why.c_str());
  }
  std::exit(2);
}

std::string quoted(const std::string& v) { return "'" + v + "'"; }

std::uint64_t bytes(const setting& s, std::uint64_t min = 1) {
  std::uint64_t b = 0;
  if (!parse_bytes(s.value, &b) || b == 0) bad(s, quoted(s.value) + " is not a byte count (e.g. 512M)");
  if (b < min) bad(s, quoted(s.value) + " is less than " + std::to_string(min) + " bytes");
  return b;
}

std::uint64_t number(const setting& s, std::uint64_t min, std::uint64_t max) {
  std::uint64_t n = 0;
  if (!parse_number(s.value, min, max, &n)) {
    bad(s, quoted(s.value) + " is not a whole number in " + std::to_string(min) + ".." + std::to_string(max));
  }
  return n;
}

std::chrono::milliseconds seconds(const setting& s) {
  std::uint64_t ms = 0;
  if (!parse_seconds_ms(s.value, &ms) || ms == 0 || ms > 3'600'000) {
    bad(s, quoted(s.value) + " is not a number of seconds in 0.001..3600");
  }
  return std::chrono::milliseconds(ms);
}

unsigned mode(const setting& s) {
  unsigned m = 0;
  if (!parse_mode(s.value, &m)) bad(s, quoted(s.value) + " is not an octal mode in 0..0777 (e.g. 0660)");
  return m;
}

using kind = xbuf::server::config_kind;

// Every flag that sets something, one line each: the command line and the
// config file both look them up here, so neither can grow a key the other
// lacks. --config, --help and --version are not settings.
constexpr flag_def flag_table[] = {
    // The socket and the daemon's limits.
    {{"socket", kind::text},
     [](const setting& s, options& o) {
       o.server.socket_path = s.value;
       o.server.socket_path_explicit = true;
     }},
    {{"socket-mode", kind::mode}, [](const setting& s, options& o) { o.server.socket_mode = mode(s); }},
    {{"socket-group", kind::text},
     [](const setting& s, options& o) {
       if (s.value.empty()) bad(s, "empty group name");
       o.server.socket_group = s.value;
     }},
    {{"max-connections", kind::number},
     [](const setting& s, options& o) {
       o.server.max_connections = static_cast<std::size_t>(number(s, 1, 1'000'000));
     }},
    {{"max-queued-bytes", kind::number},
     [](const setting& s, options& o) {
       o.server.max_queued_bytes = static_cast<std::size_t>(bytes(s, 128u << 10));  // two full frames
     }},
    {{"frame-timeout", kind::seconds}, [](const setting& s, options& o) { o.server.frame_timeout = seconds(s); }},
    {{"max-fence-deadline", kind::seconds},
     [](const setting& s, options& o) { o.server.max_fence_deadline = seconds(s); }},
    {{"alloc-wait", kind::seconds}, [](const setting& s, options& o) { o.server.alloc_wait = seconds(s); }},
    {{"stats-interval", kind::number},
     [](const setting& s, options& o) { o.server.stats_interval_s = static_cast<int>(number(s, 0, 86'400)); }},
    {{"metrics", kind::text},
     [](const setting& s, options& o) {
       auto where = xbuf::server::parse_metrics_address(s.value);
       if (!where) bad(s, where.err().message);
       o.server.metrics = std::move(*where);
     }},
    {{"quiet", kind::boolean}, [](const setting&, options& o) { o.server.log = false; }},
    // The backend and the memory manager.
    {{"backend", kind::text}, [](const setting& s, options& o) { o.backend_name = s.value; }},
    {{"sim-devices", kind::number},
     [](const setting& s, options& o) { o.sim_devices = static_cast<int>(number(s, 1, 64)); }},
    {{"sim-vram", kind::number}, [](const setting& s, options& o) { o.sim_vram = bytes(s); }},
    {{"pinned", kind::number}, [](const setting& s, options& o) { o.pinned = bytes(s); }},
    {{"pageable", kind::number}, [](const setting& s, options& o) { o.pageable = bytes(s); }},
    {{"quota-per-domain", kind::number}, [](const setting& s, options& o) { o.domain_quota = bytes(s); }},
    {{"max-buffers", kind::number},
     [](const setting& s, options& o) { o.max_buffers = number(s, 1, 100'000'000); }},
    {{"promote-interval", kind::number},
     [](const setting& s, options& o) { o.promote_interval = std::chrono::milliseconds(number(s, 0, 3'600'000)); }},
    {{"topology", kind::text}, [](const setting& s, options& o) { o.topology_xml = s.value; }},
};

const flag_def* find_flag(std::string_view name) {
  for (const auto& f : flag_table) {
    if (f.key.name == name) return &f;
  }
  return nullptr;
}

// Read when it exists; --config FILE replaces it and must exist.
constexpr const char* default_config_path = "/etc/xbuf/xbufd.toml";

// Applies the config file's settings to `o`. Returns false (after saying
// why) when the file cannot be used: bad TOML, an unknown key, a value of
// the wrong type, or a missing --config file; a bad value exits 2 in bad().
bool apply_config_file(const std::optional<std::string>& named, options& o) {
  const std::string path = named.value_or(default_config_path);
  std::vector<xbuf::server::config_key> keys;
  for (const auto& f : flag_table) keys.push_back(f.key);
  auto entries = xbuf::server::read_config_file(path, keys);
  if (!entries) {
    if (!named && entries.code() == xbuf::errc::not_found) return true;
    // Not there or not readable: say which flag named it. Bad contents already say FILE:LINE.
    const bool about_file = entries.code() == xbuf::errc::not_found || entries.code() == xbuf::errc::io_error;
    say(lv::error, "%s%s\n", named && about_file ? "--config: " : "", entries.err().message.c_str());
    return false;
  }
  for (const auto& e : *entries) {
    const setting s{find_flag(e.key), e.value, path + ":" + std::to_string(e.line)};
    s.def->apply(s, o);
  }
  say(lv::info, "config file %s (%zu settings)\n", path.c_str(), entries->size());
  return true;
}

// Fills `o` from the config file, then from argv, so a flag overrides the
// file. Returns the exit code when xbufd should stop here (--help,
// --version, an unknown option, a config file that cannot be used),
// nothing when it should go on. Exits with 2 on a missing or bad value.
std::optional<int> parse_options(int argc, char** argv, options& o) {
  o.server.socket_path = xbuf::wire::default_socket_path();
  // XBUF_SOCKET names the path as explicitly as --socket does.
  if (const char* e = std::getenv("XBUF_SOCKET"); e != nullptr && *e != '\0') o.server.socket_path_explicit = true;
  std::vector<setting> given;
  std::optional<std::string> config;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") return usage(stdout);
    if (a == "--version" || a == "-V") {
      std::printf("xbufd %s (protocol %u)\n", XBUF_VERSION, unsigned{xbuf::wire::protocol_version});
      return 0;
    }
    const bool is_config = a == "--config";
    const flag_def* f = a.starts_with("--") ? find_flag(a.substr(2)) : nullptr;
    if (!is_config && f == nullptr) {
      say(lv::error, "unknown option '%.*s'\n", static_cast<int>(a.size()), a.data());
      return usage(stderr);
    }
    const bool takes_value = is_config || f->key.kind != kind::boolean;
    if (takes_value && i + 1 >= argc) {
      say(lv::error, "%.*s: needs a value\n", static_cast<int>(a.size()), a.data());
      return 2;
    }
    if (is_config) {
      config = argv[++i];
    } else {
      given.push_back(setting{f, takes_value ? argv[++i] : "", ""});
    }
  }
  if (!apply_config_file(config, o)) return 2;
  for (const auto& s : given) s.def->apply(s, o);
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
    say(lv::error, "--topology: %s\n", loaded.err().describe().c_str());
    return false;
  } else {
    say(lv::warning, "no live topology (%s): peer access only where the runtime says\n",
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
      say(lv::error, "--topology: %s\n", sim.err().describe().c_str());
      return 2;
    }
    bcfg.sim = std::move(*sim);
  }
  auto selected = xbuf::select_backend(bcfg);
  if (!selected) {
    say(lv::error, "%s\n", selected.err().describe().c_str());
    return 1;
  }
  for (const auto& note : selected->notes) say(lv::warning, "%s\n", note.c_str());
  say(lv::info, "backend %.*s with %zu devices\n",
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
    say(lv::info, "peer access decided by the topology of %s\n", topo->source().c_str());
  }
  auto mm = xbuf::memory_manager::create(mcfg);
  if (!mm) {
    say(lv::error, "%s\n", mm.err().describe().c_str());
    return 1;
  }
  auto st = xbuf::server::run_server(**mm, o.server);
  mm->reset();  // before the backend it uses
  if (!st) {
    say(lv::error, "%s\n", st.err().describe().c_str());
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
    say(lv::warning, "%s (going on with the current limit)\n", lim.err().describe().c_str());
  } else if (lim->now != lim->before) {
    say(lv::info, "fd limit raised from %llu to %llu\n", static_cast<unsigned long long>(lim->before),
                 static_cast<unsigned long long>(lim->now));
  }
  // systemd's socket, if it passed one, before anything else opens fds.
  auto activated = xbuf::server::take_activated_socket();
  if (!activated) {
    say(lv::error, "%s\n", activated.err().describe().c_str());
    return 1;
  }
  if (*activated) {
    o.server.listen_fd = (*activated)->fd;
    if (!(*activated)->path.empty()) o.server.socket_path = (*activated)->path;
  }
  auto choice = xbuf::parse_backend_choice(o.backend_name);
  if (!choice) {
    say(lv::error, "%s\n", choice.err().describe().c_str());
    return 2;
  }
  std::shared_ptr<const xbuf::p2p::topology> topo;
  if (!load_topology(o, &topo)) return 2;
  auto selected = choose_backend(o, *choice, topo);
  if (auto* code = std::get_if<int>(&selected)) return *code;
  return serve(o, *std::get<xbuf::selected_backend>(selected).chosen, topo);
}
