// SPDX-License-Identifier: MIT
#include "client/stat_command.hpp"

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "client/cli_args.hpp"
#include "client/remote_client.hpp"
#include "client/stats_json.hpp"
#include "core/units.hpp"
#include "server/protocol.hpp"
#include "server/stats.hpp"

namespace xbuf::client {

namespace {

constexpr const char* usage_line = "usage: xbuf stat [--socket PATH] [--json]";

void print_help() {
  std::printf(
      "%s\n"
      "What xbufd holds: per domain, per client, per buffer, and its counters.\n"
      "A tenant sees its own uid's clients and buffers plus per-domain totals;\n"
      "the operator (root or xbufd's uid) sees everything.\n\n"
      "%s"
      "  --json          one JSON object (\"schema\":\"xbuf.stat/1\") instead of tables\n"
      "  -h, --help      this text\n\n"
      "%s",
      usage_line, cli::socket_help, cli::exit_codes_help);
}

// The first line says whose view this is, so a tenant never mistakes its
// own rows for the whole daemon.
const char* view_name(const wire::stats_reply& s) {
  return s.tenant_view ? "your buffers; totals for every tenant"
                       : "operator view: every client and buffer";
}

void print_tables(const std::string& path, owner_id self, const wire::stats_reply& s) {
  std::printf("xbufd on %s (backend %s) - %s\n\n", path.c_str(), s.backend.c_str(), view_name(s));
  std::printf("%-10s %10s %10s %6s %10s %8s %12s %10s %6s\n", "DOMAIN", "USED", "CAPACITY", "USE%", "PEAK",
              "BUFFERS", "DELAYED FREE", "EXPORTED", "FRAG%");
  for (const auto& d : s.domains) {
    const double pct = d.capacity != 0
                           ? 100.0 * static_cast<double>(d.used) / static_cast<double>(d.capacity)
                           : 0.0;
    std::printf("%-10s %10s %10s %5.1f%% %10s %8u %12s %10s %5.1f%%\n", d.name.c_str(),
                format_bytes(d.used).c_str(), format_bytes(d.capacity).c_str(), pct,
                format_bytes(d.peak_used).c_str(), d.buffers, format_bytes(d.delayed_free_bytes).c_str(),
                format_bytes(d.exported_bytes).c_str(), static_cast<double>(d.fragmentation_ppm) / 1e4);
  }
  // FREED/EXP and FREED/ATT: freed by the client, still charged to it,
  // held by an unreleased export or by an importer's attachment.
  std::printf("\n%-6s %-8s %-6s %-16s %10s %10s %8s %10s %10s\n", "CLIENT", "PID", "UID", "NAME", "BYTES",
              "PEAK", "BUFFERS", "FREED/EXP", "FREED/ATT");
  for (const auto& cl : s.clients) {
    std::printf("%-6u %-8d %-6u %-16s %10s %10s %8u %10s %10s%s\n", cl.owner, cl.pid, cl.uid, cl.name.c_str(),
                format_bytes(cl.bytes).c_str(), format_bytes(cl.peak_bytes).c_str(), cl.buffers,
                format_bytes(cl.freed_exported_bytes).c_str(), format_bytes(cl.freed_attached_bytes).c_str(),
                cl.owner == self ? "  (you)" : "");
  }
  if (s.more_clients != 0) {
    std::printf("... and %u more clients (one reply lists at most %zu)\n", s.more_clients,
                wire::max_stat_clients);
  }
  std::printf("\n%-8s %-6s %-16s %10s %-12s %7s %5s %7s %4s\n", "BUFFER", "OWNER", "NAME", "SIZE",
              "PLACEMENT", "ATTACH", "PINS", "FENCES", "GEN");
  for (const auto& b : s.buffers) {
    std::printf("%-8llu %-6u %-16s %10s %-12s %7u %5d %7u %4llu%s\n",
                static_cast<unsigned long long>(b.id), b.owner, b.name.c_str(),
                format_bytes(b.size).c_str(), to_string(b.where).c_str(), b.attachments, b.pins,
                b.fences, static_cast<unsigned long long>(b.generation), b.lost ? "  LOST" : "");
  }
  if (s.buffers.empty() && s.more_buffers == 0) std::printf("(none)\n");
  if (s.more_buffers != 0) {
    std::printf("... and %u more buffers (one reply lists at most %zu)\n", s.more_buffers,
                wire::max_stat_buffers);
  } else if (s.buffers_truncated) {
    std::printf("... (more buffers than fit one reply)\n");
  }
  std::printf("\nCOUNTERS\n");
  server::print_counters(stdout, s);
}

}  // namespace

int stat_main(std::span<char*> args) {
  cli::arg_reader r("xbuf stat", args);
  std::optional<std::string> socket;
  bool json = false;
  while (r.next()) {
    if (r.is("--socket")) {
      socket = r.value();
      if (!socket) return cli::exit_usage;
    } else if (r.is("--json")) {
      json = true;
    } else if (r.is("--help") || r.is("-h")) {
      print_help();
      return cli::exit_ok;
    } else {
      return r.unknown(usage_line);
    }
  }
  const std::string path = cli::socket_path(socket);
  auto c = cli::connect("xbuf stat", path, "xbuf-stat");
  if (!c) return cli::exit_runtime;
  auto s = c->stats();
  if (!s) {
    std::fprintf(stderr, "xbuf stat: %s\n", s.err().describe().c_str());
    return cli::exit_runtime;
  }
  if (json) {
    std::printf("%s\n", to_json(*s).c_str());
  } else {
    print_tables(path, c->owner(), *s);
  }
  return cli::exit_ok;
}

}  // namespace xbuf::client
