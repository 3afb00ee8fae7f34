// SPDX-License-Identifier: MIT
#include "server/stats.hpp"

#include <ctime>
#include <string>

#include "core/units.hpp"

namespace xbuf::server {

namespace {

// What one listed buffer costs in the reply, at most (fixed fields + name),
// and how much of the frame the list may take: the rest of max_payload is
// for domains, clients and counters.
constexpr std::size_t buffer_fixed_cost = 80;
constexpr std::size_t buffer_list_budget = 48 * 1024;

std::vector<wire::stat_domain> domains_of(const manager_stats& st) {
  std::vector<wire::stat_domain> out;
  for (const auto& d : st.domains) {
    out.push_back({.name = d.name, .where = d.where, .capacity = d.capacity, .used = d.used,
                   .delayed_free_bytes = d.delayed_free_bytes,
                   .buffers = static_cast<std::uint32_t>(d.buffers)});
  }
  return out;
}

std::vector<wire::stat_client> clients_of(const manager_stats& st, const std::vector<client_record>& clients) {
  std::vector<wire::stat_client> out;
  for (const auto& c : clients) {
    wire::stat_client sc{.owner = c.owner, .pid = c.pid, .uid = c.uid, .name = c.name};
    for (const auto& o : st.owners) {
      if (o.owner == c.owner) {
        sc.bytes = o.bytes;
        sc.buffers = static_cast<std::uint32_t>(o.buffers);
      }
    }
    out.push_back(std::move(sc));
  }
  return out;
}

// Fills out.buffers until the budget is spent; sets buffers_truncated then.
void list_buffers(const std::vector<buffer_info>& buffers, wire::stats_reply& out) {
  std::size_t budget = buffer_list_budget;
  for (const auto& b : buffers) {
    const std::size_t cost = buffer_fixed_cost + b.name.size();
    if (cost > budget) {
      out.buffers_truncated = true;
      break;
    }
    budget -= cost;
    out.buffers.push_back({.id = b.id, .owner = b.owner, .name = b.name, .size = b.size, .where = b.where,
                           .attachments = static_cast<std::uint32_t>(b.attachments), .pins = b.pins,
                           .fences = static_cast<std::uint32_t>(b.fences), .generation = b.generation,
                           .lost = b.lost});
  }
}

std::vector<wire::stat_counter> counters_of(const manager_stats& st) {
  const auto& c = st.counters;
  return {{"allocations", c.allocations},   {"frees", c.frees},
          {"evictions", c.evictions},       {"moves", c.moves},
          {"bytes_moved", c.bytes_moved},   {"move_notifies", c.move_notifies},
          {"delayed_frees", c.delayed_frees}, {"failed_moves", c.failed_moves},
          {"promotions", c.promotions},     {"allocation_failures", c.allocation_failures},
          {"pinned_bytes", st.pinned_bytes}, {"pinned_limit", st.pinned_limit}};
}

}  // namespace

wire::stats_reply collect_stats(memory_manager& mm, const client_registry& clients) {
  const manager_stats st = mm.stats();
  const std::vector<buffer_info> buffers = mm.buffers();
  wire::stats_reply out;
  out.backend = std::string(mm.device_backend().name());
  out.domains = domains_of(st);
  out.clients = clients_of(st, clients.snapshot());
  list_buffers(buffers, out);
  out.counters = counters_of(st);
  return out;
}

void print_status(std::FILE* out, const wire::stats_reply& s) {
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%H:%M:%S", &tm);
  std::fprintf(out, "---- xbufd %s  backend %s  clients %zu  buffers %zu ----\n", when, s.backend.c_str(),
               s.clients.size(), s.buffers.size());
  for (const auto& d : s.domains) {
    const double pct = d.capacity ? 100.0 * static_cast<double>(d.used) / static_cast<double>(d.capacity) : 0.0;
    std::fprintf(out, "  %-10s %10s / %-10s %5.1f%%  %u buffers  %s delayed\n", d.name.c_str(),
                 format_bytes(d.used).c_str(), format_bytes(d.capacity).c_str(), pct, d.buffers,
                 format_bytes(d.delayed_free_bytes).c_str());
  }
  for (const auto& c : s.clients) {
    std::fprintf(out, "  client %-4u pid %-7d %-16s %10s in %u buffers\n", c.owner, c.pid, c.name.c_str(),
                 format_bytes(c.bytes).c_str(), c.buffers);
  }
  std::fprintf(out, "  ");
  for (const auto& c : s.counters) {
    std::fprintf(out, "%s %llu  ", c.name.c_str(), static_cast<unsigned long long>(c.value));
  }
  std::fprintf(out, "\n");
  std::fflush(out);
}

}  // namespace xbuf::server
