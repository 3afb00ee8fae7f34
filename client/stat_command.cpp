// SPDX-License-Identifier: MIT
#include "client/stat_command.hpp"

#include <cstdio>
#include <string>
#include <string_view>

#include "client/remote_client.hpp"
#include "core/units.hpp"
#include "server/protocol.hpp"

namespace xbuf::client {

namespace {

// The first line says whose view this is, so a tenant never mistakes its
// own rows for the whole daemon.
const char* view_name(const wire::stats_reply& s) {
  return s.tenant_view ? "your buffers; totals for every tenant" : "operator view: every client and buffer";
}

}  // namespace

int stat_main(std::span<char*> args) {
  std::string path = wire::default_socket_path();
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    if (a == "--socket" && i + 1 < args.size()) {
      path = args[++i];
    } else {
      std::fprintf(stderr, "usage: xbuf stat [--socket PATH]\n");
      return 2;
    }
  }
  auto c = remote_client::connect(path, "xbuf-stat");
  if (!c) {
    std::fprintf(stderr, "xbuf stat: %s\n", c.err().describe().c_str());
    return 1;
  }
  auto s = c->stats();
  if (!s) {
    std::fprintf(stderr, "xbuf stat: %s\n", s.err().describe().c_str());
    return 1;
  }
  std::printf("xbufd on %s (backend %s) - %s\n\n", path.c_str(), s->backend.c_str(), view_name(*s));
  std::printf("%-10s %10s %10s %8s %10s\n", "DOMAIN", "USED", "CAPACITY", "BUFFERS", "DELAYED");
  for (const auto& d : s->domains) {
    std::printf("%-10s %10s %10s %8u %10s\n", d.name.c_str(), format_bytes(d.used).c_str(), format_bytes(d.capacity).c_str(),
                d.buffers, format_bytes(d.delayed_free_bytes).c_str());
  }
  std::printf("\n%-6s %-8s %-6s %-20s %10s %8s\n", "CLIENT", "PID", "UID", "NAME", "BYTES", "BUFFERS");
  for (const auto& cl : s->clients) {
    std::printf("%-6u %-8d %-6u %-20s %10s %8u%s\n", cl.owner, cl.pid, cl.uid, cl.name.c_str(),
                format_bytes(cl.bytes).c_str(), cl.buffers, cl.owner == c->owner() ? "  (this xbuf stat)" : "");
  }
  if (s->more_clients != 0) {
    std::printf("... and %u more clients (one reply lists at most %zu)\n", s->more_clients, wire::max_stat_clients);
  }
  std::printf("\n%-8s %-6s %-16s %10s %-12s %7s %5s %7s %4s\n", "BUFFER", "OWNER", "NAME", "SIZE", "PLACEMENT",
              "ATTACH", "PINS", "FENCES", "GEN");
  for (const auto& b : s->buffers) {
    std::printf("%-8llu %-6u %-16s %10s %-12s %7u %5d %7u %4llu%s\n", static_cast<unsigned long long>(b.id),
                b.owner, b.name.c_str(), format_bytes(b.size).c_str(), to_string(b.where).c_str(), b.attachments, b.pins,
                b.fences, static_cast<unsigned long long>(b.generation), b.lost ? "  LOST" : "");
  }
  if (s->more_buffers != 0) {
    std::printf("... and %u more buffers (one reply lists at most %zu)\n", s->more_buffers, wire::max_stat_buffers);
  } else if (s->buffers_truncated) {
    std::printf("... (more buffers than fit one reply)\n");
  }
  std::printf("\n");
  for (const auto& k : s->counters) {
    std::printf("%s=%llu ", k.name.c_str(), static_cast<unsigned long long>(k.value));
  }
  std::printf("\n");
  return 0;
}

}  // namespace xbuf::client
