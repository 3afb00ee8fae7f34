// SPDX-License-Identifier: MIT
#include "server/metrics_text.hpp"

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/memory_kind.hpp"

namespace xbuf::server {

namespace {

// HELP text escapes backslash and newline only (quotes are plain there).
std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// A reply string made into part of a metric name: [a-zA-Z0-9_] kept,
// anything else '_'.
std::string name_part(std::string_view v) {
  std::string out(v);
  for (char& c : out) {
    const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!keep) c = '_';
  }
  return out;
}

using labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// Writes one family: header once, then samples.
class family {
 public:
  family(std::string& out, std::string_view name, std::string_view type, std::string_view help)
      : out_(out), name_(name) {
    out_ += "# HELP ";
    out_ += name_;
    out_ += ' ';
    out_ += escape_help(help);
    out_ += "\n# TYPE ";
    out_ += name_;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  void sample(labels ls, std::uint64_t value) {
    out_ += name_;
    if (ls.size() != 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, v] : ls) {
        if (!first) out_ += ',';
        first = false;
        out_ += k;
        out_ += "=\"";
        out_ += escape_label_value(v);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
    out_ += std::to_string(value);
    out_ += '\n';
  }

 private:
  std::string& out_;
  std::string name_;
};

std::string_view kind_label(memory_kind k) {
  switch (k) {
    case memory_kind::device: return "vram";
    case memory_kind::host_pinned: return "pinned";
    case memory_kind::host_pageable: return "pageable";
  }
  return "unknown";
}

// The PCI address of the GPU behind a VRAM domain; "" for host memory or
// an address the backend does not know.
std::string_view device_label(const placement& where, std::span<const device_info> devices) {
  if (where.kind != memory_kind::device || where.device < 0) return {};
  const auto i = static_cast<std::size_t>(where.device);
  return i < devices.size() ? std::string_view(devices[i].pci_address) : std::string_view{};
}

// The reply's counters this file describes, in the order they are written.
struct counter_family {
  std::string_view counter;  // wire::stat_counter::name (stats.cpp, counters_of)
  std::string_view metric;
  std::string_view type;
  std::string_view help;
};
constexpr counter_family counter_families[] = {
    {"allocations", "xbuf_allocations_total", "counter", "Buffers allocated."},
    {"allocation_failures", "xbuf_allocation_failures_total", "counter",
     "Allocations refused: no room after eviction, a quota or a limit."},
    {"frees", "xbuf_frees_total", "counter", "Buffers freed."},
    {"evictions", "xbuf_evictions_total", "counter", "Buffers evicted from a full domain to a slower one."},
    {"moves", "xbuf_moves_total", "counter", "Buffer moves of any cause: evictions, promotions, migrations."},
    {"bytes_moved", "xbuf_moved_bytes_total", "counter", "Bytes copied by buffer moves."},
    {"failed_moves", "xbuf_failed_moves_total", "counter", "Moves whose every copy failed (contents lost)."},
    {"move_notifies", "xbuf_move_notifies_total", "counter", "move_notify events sent to clients."},
    {"delayed_frees", "xbuf_delayed_frees_total", "counter", "Memory releases that had to wait for fences."},
    {"promotions", "xbuf_promotions_total", "counter", "Evicted buffers moved back to their preferred domain."},
    {"promotions_deferred", "xbuf_promotions_deferred_total", "counter",
     "Promotions skipped by the --promote-interval anti ping-pong rule."},
    {"clears", "xbuf_clears_total", "counter", "New buffers zeroed before their first use."},
    {"bytes_cleared", "xbuf_cleared_bytes_total", "counter", "Bytes zeroed for new buffers."},
    {"pinned_bytes", "xbuf_pinned_bytes", "gauge", "Bytes held in place by pins and no-evict buffers."},
    {"pinned_limit", "xbuf_pinned_limit_bytes", "gauge", "The --pinned limit on bytes held in place."},
};

const counter_family* described(std::string_view counter) {
  for (const auto& f : counter_families) {
    if (f.counter == counter) return &f;
  }
  return nullptr;
}

void render_domains(std::string& out, const wire::stats_reply& s, std::span<const device_info> devices) {
  struct gauge {
    std::string_view name;
    std::string_view help;
    std::uint64_t (*value)(const wire::stat_domain&);
  };
  constexpr gauge gauges[] = {
      {"xbuf_domain_capacity_bytes", "Bytes the domain can hold.",
       [](const wire::stat_domain& d) { return d.capacity; }},
      {"xbuf_domain_used_bytes", "Bytes in use in the domain: live buffers and memory waiting for fences.",
       [](const wire::stat_domain& d) { return d.used; }},
      {"xbuf_domain_peak_used_bytes", "The most bytes in use in the domain since xbufd started.",
       [](const wire::stat_domain& d) { return d.peak_used; }},
      {"xbuf_domain_delayed_free_bytes", "Bytes freed by their owners and waiting for fences before reuse.",
       [](const wire::stat_domain& d) { return d.delayed_free_bytes; }},
      {"xbuf_domain_exported_bytes", "Bytes of the domain's buffers with an export not yet released.",
       [](const wire::stat_domain& d) { return d.exported_bytes; }},
      {"xbuf_domain_largest_free_block_bytes",
       "The largest allocation the domain holds now without evicting (fragmentation: 1 - this / free).",
       [](const wire::stat_domain& d) { return d.largest_free_block; }},
      {"xbuf_domain_buffers", "Buffers placed in the domain.",
       [](const wire::stat_domain& d) { return std::uint64_t{d.buffers}; }},
  };
  for (const auto& g : gauges) {
    family f(out, g.name, "gauge", g.help);
    for (const auto& d : s.domains) {
      f.sample({{"domain", d.name}, {"kind", kind_label(d.where.kind)}, {"device", device_label(d.where, devices)}},
               g.value(d));
    }
  }
}

void render_counters(std::string& out, const wire::stats_reply& s) {
  for (const auto& f : counter_families) {
    for (const auto& c : s.counters) {
      if (c.name != f.counter) continue;
      family(out, f.metric, f.type, f.help).sample({}, c.value);
      break;  // one sample per family, even if a reply listed a name twice
    }
  }
  std::vector<std::string> written;
  for (const auto& c : s.counters) {
    if (described(c.name) != nullptr) continue;
    std::string name = "xbuf_" + name_part(c.name);
    bool seen = false;
    for (const auto& w : written) seen = seen || w == name;
    if (seen) continue;
    family(out, name, "untyped", "The stats reply's counter '" + c.name + "'.").sample({}, c.value);
    written.push_back(std::move(name));
  }
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string render_metrics(const wire::stats_reply& s, std::span<const device_info> devices) {
  std::string out;
  out.reserve(4096 + 512 * s.domains.size());
  family(out, "xbuf_backend_info", "gauge", "The device backend xbufd runs on (always 1).")
      .sample({{"backend", s.backend}}, 1);
  {
    family f(out, "xbuf_device_info", "gauge",
             "A device of the backend (always 1); device is its PCI address, empty when unknown.");
    for (std::size_t i = 0; i < devices.size(); ++i) {
      const std::string index = std::to_string(i);
      f.sample({{"device", devices[i].pci_address}, {"index", index}, {"name", devices[i].name},
                {"vendor", devices[i].vendor}},
               1);
    }
  }
  render_domains(out, s, devices);
  family(out, "xbuf_clients", "gauge", "Clients connected.").sample({}, s.clients.size() + s.more_clients);
  family(out, "xbuf_buffers", "gauge", "Buffers held by clients.").sample({}, s.buffers.size() + s.more_buffers);
  render_counters(out, s);
  return out;
}

}  // namespace xbuf::server
