// SPDX-License-Identifier: MIT
#include "server/stats.hpp"

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/units.hpp"

namespace xbuf::server {

namespace {

// A daemon-made or client-given string cut to what its row may carry: the
// worst-case reply size (wire::stats_reply_max_bytes) counts on it.
std::string cut(std::string_view s, std::size_t max_bytes) {
  return std::string(s.substr(0, std::min(s.size(), max_bytes)));
}

std::uint32_t count32(std::size_t n) {
  return static_cast<std::uint32_t>(std::min<std::size_t>(n, UINT32_MAX));
}

// Per-domain totals over every tenant: what anyone may see.
std::vector<wire::stat_domain> domains_of(const manager_stats& st) {
  std::vector<wire::stat_domain> out;
  for (const auto& d : st.domains) {
    if (out.size() == wire::max_stat_domains) break;  // more domains than any machine has
    out.push_back({.name = cut(d.name, wire::max_stat_label_bytes), .where = d.where, .capacity = d.capacity,
                   .used = d.used, .delayed_free_bytes = d.delayed_free_bytes, .buffers = count32(d.buffers),
                   .peak_used = d.peak_used, .exported_bytes = d.exported_bytes,
                   .largest_free_block = d.largest_free_block,
                   .fragmentation_ppm = static_cast<std::uint32_t>(std::clamp(d.fragmentation, 0.0, 1.0) * 1e6)});
  }
  return out;
}

// Whether the asker may see rows about `owner` (visible_to, by registry record).
using visibility = std::function<bool(owner_id owner)>;

// The rows of `clients` the asker may see, at most max_stat_clients;
// out.more_clients counts the rest.
void list_clients(const manager_stats& st, const std::vector<client_record>& clients, const visibility& visible,
                  wire::stats_reply& out) {
  std::size_t left_out = 0;
  for (const auto& c : clients) {
    if (!visible(c.owner)) continue;
    if (out.clients.size() == wire::max_stat_clients) {
      ++left_out;
      continue;
    }
    wire::stat_client sc{.owner = c.owner, .pid = c.pid, .uid = c.uid, .name = cut(c.name, wire::max_name_bytes)};
    for (const auto& o : st.owners) {
      if (o.owner == c.owner) {
        sc.bytes = o.bytes;
        sc.buffers = count32(o.buffers);
        sc.freed_exported_bytes = o.freed_exported_bytes;
        sc.freed_attached_bytes = o.freed_attached_bytes;
        sc.peak_bytes = o.peak_bytes;
        sc.total_bytes = o.total_bytes;
      }
    }
    out.clients.push_back(std::move(sc));
  }
  out.more_clients = count32(left_out);
}

// The buffers the asker may see, at most max_stat_buffers;
// out.more_buffers counts the rest.
void list_buffers(const std::vector<buffer_info>& buffers, const visibility& visible, wire::stats_reply& out) {
  std::size_t left_out = 0;
  for (const auto& b : buffers) {
    if (!visible(b.owner)) continue;
    if (out.buffers.size() == wire::max_stat_buffers) {
      ++left_out;
      continue;
    }
    out.buffers.push_back({.id = b.id, .owner = b.owner, .name = cut(b.name, wire::max_name_bytes), .size = b.size,
                           .where = b.where, .attachments = count32(b.attachments), .pins = b.pins,
                           .fences = count32(b.fences), .generation = b.generation, .lost = b.lost});
  }
  out.more_buffers = count32(left_out);
  out.buffers_truncated = left_out != 0;
}

std::vector<wire::stat_counter> counters_of(const manager_stats& st) {
  const auto& c = st.counters;
  std::vector<wire::stat_counter> out{
      {"allocations", c.allocations},     {"frees", c.frees},
      {"evictions", c.evictions},         {"moves", c.moves},
      {"bytes_moved", c.bytes_moved},     {"move_notifies", c.move_notifies},
      {"delayed_frees", c.delayed_frees}, {"failed_moves", c.failed_moves},
      {"promotions", c.promotions},       {"allocation_failures", c.allocation_failures},
      {"promotions_deferred", c.promotions_deferred},
      {"clears", c.clears},               {"bytes_cleared", c.bytes_cleared},
      {"pinned_bytes", st.pinned_bytes},  {"pinned_limit", st.pinned_limit}};
  if (out.size() > wire::max_stat_counters) out.resize(wire::max_stat_counters);
  return out;
}

// `clients` is a registry snapshot: sorted by owner id.
std::optional<client_record> record_of(const std::vector<client_record>& clients, owner_id owner) {
  const auto it = std::lower_bound(clients.begin(), clients.end(), owner,
                                   [](const client_record& c, owner_id o) { return c.owner < o; });
  if (it == clients.end() || it->owner != owner) return std::nullopt;
  return *it;
}

// `daemon_uid` nothing: the operator view, whoever `self` is.
wire::stats_reply assemble(memory_manager& mm, const client_registry& registry, owner_id self,
                           std::optional<std::uint32_t> daemon_uid) {
  const manager_stats st = mm.stats();
  const std::vector<buffer_info> buffers = mm.buffers();
  // After the manager's calls: never the registry's mutex and the manager's at once.
  const std::vector<client_record> clients = registry.snapshot();
  const std::optional<client_record> viewer = record_of(clients, self);
  const stats_view view = daemon_uid ? view_for(viewer, *daemon_uid) : stats_view::everything;
  const visibility visible = [&](owner_id owner) {
    return view == stats_view::everything || visible_to(viewer, *daemon_uid, record_of(clients, owner));
  };
  wire::stats_reply out;
  out.backend = cut(mm.device_backend().name(), wire::max_stat_label_bytes);
  out.tenant_view = view == stats_view::tenant;
  out.domains = domains_of(st);
  list_clients(st, clients, visible, out);
  list_buffers(buffers, visible, out);
  out.counters = counters_of(st);
  return out;
}

}  // namespace

wire::trace_reply collect_trace(const memory_manager& mm, const client_registry& registry, owner_id self,
                                std::uint32_t daemon_uid, std::uint64_t since, std::size_t max) {
  const std::vector<client_record> clients = registry.snapshot();
  const std::optional<client_record> viewer = record_of(clients, self);
  const auto page = mm.events_since(since, std::min(max, wire::max_trace_events), [&](owner_id owner) {
    return visible_to(viewer, daemon_uid, record_of(clients, owner));
  });
  wire::trace_reply out;
  out.next = page.next;
  out.dropped = page.dropped;
  out.events.reserve(page.events.size());
  for (const auto& e : page.events) {
    out.events.push_back({.seq = e.seq, .time_ns = e.time_ns, .kind = static_cast<std::uint8_t>(e.kind),
                          .owner = e.owner, .buffer = e.buffer, .bytes = e.bytes, .from = e.from, .to = e.to,
                          .notified = e.notified});
  }
  return out;
}

bool visible_to(const std::optional<client_record>& viewer, std::uint32_t daemon_uid,
                const std::optional<client_record>& subject) noexcept {
  if (!viewer) return false;
  if (viewer->uid == 0 || viewer->uid == daemon_uid) return true;
  return subject && subject->uid == viewer->uid;
}

stats_view view_for(const std::optional<client_record>& viewer, std::uint32_t daemon_uid) noexcept {
  // The operator is whoever sees a row about anyone at all.
  return visible_to(viewer, daemon_uid, std::nullopt) ? stats_view::everything : stats_view::tenant;
}

wire::stats_reply collect_stats(memory_manager& mm, const client_registry& clients, owner_id self,
                                std::uint32_t daemon_uid) {
  return assemble(mm, clients, self, daemon_uid);
}

wire::stats_reply collect_stats(memory_manager& mm, const client_registry& clients) {
  return assemble(mm, clients, 0, std::nullopt);
}

wire::stats_reply collect_stats(memory_manager& mm) { return assemble(mm, client_registry{}, 0, std::nullopt); }

void print_status(std::FILE* out, const wire::stats_reply& s) {
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%H:%M:%S", &tm);
  std::fprintf(out, "---- xbufd %s  backend %s  clients %zu  buffers %zu ----\n", when, s.backend.c_str(),
               s.clients.size() + s.more_clients, s.buffers.size() + s.more_buffers);
  for (const auto& d : s.domains) {
    const double pct = d.capacity ? 100.0 * static_cast<double>(d.used) / static_cast<double>(d.capacity) : 0.0;
    std::fprintf(out, "  %-10s %10s / %-10s %5.1f%%  peak %-10s %u buffers  %s delayed\n", d.name.c_str(),
                 format_bytes(d.used).c_str(), format_bytes(d.capacity).c_str(), pct,
                 format_bytes(d.peak_used).c_str(), d.buffers, format_bytes(d.delayed_free_bytes).c_str());
  }
  for (const auto& c : s.clients) {
    std::fprintf(out, "  client %-4u pid %-7d %-16s %10s in %u buffers", c.owner, c.pid, c.name.c_str(),
                 format_bytes(c.bytes).c_str(), c.buffers);
    // Freed but still charged to it: only when there is some, to keep the line short.
    if (c.freed_exported_bytes + c.freed_attached_bytes != 0) {
      std::fprintf(out, "  freed, held: %s exported, %s attached", format_bytes(c.freed_exported_bytes).c_str(),
                   format_bytes(c.freed_attached_bytes).c_str());
    }
    std::fputc('\n', out);
  }
  print_counters(out, s);
  std::fflush(out);
}

namespace {

// What a counter is called on screen: the daemon's names are short for
// JSON and grep, these say what is counted. `bytes`: shown in binary units.
struct counter_label {
  std::string_view name;
  std::string_view label;
  bool bytes;
};
constexpr counter_label labels[] = {
    {"allocations", "allocations", false},
    {"allocation_failures", "refused allocations", false},
    {"frees", "frees", false},
    {"evictions", "evictions", false},
    {"moves", "moves", false},
    {"bytes_moved", "bytes moved", true},
    {"failed_moves", "failed moves", false},
    {"move_notifies", "move_notify sent", false},
    {"delayed_frees", "delayed frees", false},
    {"promotions", "promotions", false},
    {"promotions_deferred", "promotions deferred", false},
    {"clears", "clears", false},
    {"bytes_cleared", "bytes cleared", true},
};

std::optional<std::uint64_t> counter(const wire::stats_reply& s, std::string_view name) {
  for (const auto& k : s.counters) {
    if (k.name == name) return k.value;
  }
  return std::nullopt;
}

}  // namespace

// Three to a line, each a 19-column label and a 10-column value
// (3 * (2 + 19 + 1 + 10) = 96 columns), in the order of `labels` (what an
// operator looks for first), then any counter this build does not know (a
// newer daemon's) under its own name.
void print_counters(std::FILE* out, const wire::stats_reply& s) {
  int in_line = 0;
  auto cell = [&](std::string_view label, const std::string& value) {
    std::fprintf(out, "  %-19.*s %10s", static_cast<int>(label.size()), label.data(), value.c_str());
    if (++in_line == 3) {
      std::fprintf(out, "\n");
      in_line = 0;
    }
  };
  for (const auto& l : labels) {
    if (auto v = counter(s, l.name)) cell(l.label, l.bytes ? format_bytes(*v) : std::to_string(*v));
  }
  for (const auto& k : s.counters) {
    bool known = k.name == "pinned_bytes" || k.name == "pinned_limit";
    for (const auto& l : labels) known = known || l.name == k.name;
    if (!known) cell(k.name, std::to_string(k.value));
  }
  if (in_line != 0) std::fprintf(out, "\n");
  const auto held = counter(s, "pinned_bytes");
  const auto limit = counter(s, "pinned_limit");
  if (held || limit) {
    std::fprintf(out, "  held in place by pins and no-evict buffers: %s of %s (--pinned limit)\n",
                 format_bytes(held.value_or(0)).c_str(), limit ? format_bytes(*limit).c_str() : "?");
  }
}

}  // namespace xbuf::server
