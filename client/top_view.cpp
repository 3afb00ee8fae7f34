// SPDX-License-Identifier: MIT
#include "client/top_view.hpp"

#include <algorithm>
#include <cstdarg>
#include <cstdio>

#include "core/units.hpp"

namespace xbuf::client {

namespace {

// Counters shown in the event lines, in this order, with their labels;
// byte counters are formatted as sizes.
struct shown {
  std::string_view counter;
  std::string_view label;
  bool bytes;
};
constexpr shown shown_counters[] = {
    {"allocations", "allocations", false}, {"frees", "frees", false},
    {"allocation_failures", "refused", false}, {"evictions", "evictions", false},
    {"promotions", "promotions", false}, {"moves", "moves", false},
    {"bytes_moved", "moved", true}, {"move_notifies", "move_notify", false},
    {"clears", "clears", false},
};

std::uint64_t counter(const std::vector<wire::stat_counter>& cs, std::string_view name) {
  for (const auto& c : cs) {
    if (c.name == name) return c.value;
  }
  return 0;
}

std::string fit(std::string line, std::size_t cols) {
  if (line.size() > cols) line.resize(cols);
  return line;
}

__attribute__((format(printf, 1, 2))) std::string format(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

std::string bar(std::uint64_t used, std::uint64_t capacity, std::size_t width) {
  const std::size_t full =
      capacity == 0 ? 0
                    : static_cast<std::size_t>(std::min<double>(
                          static_cast<double>(width), static_cast<double>(width) * static_cast<double>(used) /
                                                          static_cast<double>(capacity)));
  return "[" + std::string(full, '#') + std::string(width - full, '.') + "]";
}

}  // namespace

void note_refresh(top_history& h, const wire::stats_reply& now, std::string_view clock) {
  if (h.primed) {
    std::string line(clock);
    bool moved = false;
    for (const auto& c : shown_counters) {
      const std::uint64_t a = counter(h.last, c.counter), b = counter(now.counters, c.counter);
      if (b <= a) continue;
      moved = true;
      line += "  " + std::string(c.label) + (c.bytes ? " " + format_bytes(b - a) : " +" + std::to_string(b - a));
    }
    if (moved) {
      h.events.push_front(std::move(line));
      if (h.events.size() > top_history::max_events) h.events.pop_back();
    }
  }
  h.last = now.counters;
  h.primed = true;
}

std::vector<std::string> render_top(const wire::stats_reply& s, const top_history& h, std::string_view socket,
                                    std::size_t cols) {
  std::vector<std::string> out;
  const auto add = [&](std::string line) { out.push_back(fit(std::move(line), cols)); };
  add(format("xbuf top - xbufd on %.*s (backend %s) - %s   q quits", static_cast<int>(socket.size()),
             socket.data(), s.backend.c_str(),
             s.tenant_view ? "your clients; totals for every tenant" : "every tenant"));
  add("");
  add(format("%-9s %10s %10s %-22s %6s %10s %10s %7s", "DOMAIN", "USED", "CAPACITY", "", "USE%", "PEAK",
             "EXPORTED", "BUFFERS"));
  for (const auto& d : s.domains) {
    const double pct = d.capacity != 0 ? 100.0 * static_cast<double>(d.used) / static_cast<double>(d.capacity) : 0;
    add(format("%-9s %10s %10s %-22s %5.1f%% %10s %10s %7u", d.name.c_str(), format_bytes(d.used).c_str(),
               format_bytes(d.capacity).c_str(), bar(d.used, d.capacity, 20).c_str(), pct,
               format_bytes(d.peak_used).c_str(), format_bytes(d.exported_bytes).c_str(), d.buffers));
  }
  add("");
  add(format("%-6s %-8s %-20s %10s %10s %8s %10s %10s", "CLIENT", "PID", "NAME", "BYTES", "PEAK", "BUFFERS",
             "FREED/EXP", "FREED/ATT"));
  for (const auto& c : s.clients) {
    add(format("%-6u %-8d %-20s %10s %10s %8u %10s %10s", c.owner, c.pid, c.name.c_str(),
               format_bytes(c.bytes).c_str(), format_bytes(c.peak_bytes).c_str(), c.buffers,
               format_bytes(c.freed_exported_bytes).c_str(), format_bytes(c.freed_attached_bytes).c_str()));
  }
  if (s.more_clients != 0) add(format("... and %u more clients", s.more_clients));
  add("");
  add("RECENT (what changed between refreshes)");
  if (h.events.empty()) add("  (nothing yet)");
  for (const auto& e : h.events) add(e);
  return out;
}

}  // namespace xbuf::client
