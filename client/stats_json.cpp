// SPDX-License-Identifier: MIT
//
// stats_json.cpp - stats_json.hpp. A writer of its own rather than a JSON
// library: the shape is fixed, small and flat, and libxbuf.so links no
// dependency it does not need.
#include "client/stats_json.hpp"

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "allocator/domain.hpp"
#include "core/memory_kind.hpp"

namespace xbuf::client {

namespace {

// The length of the well-formed UTF-8 sequence that starts at s[i], or 0
// when none does (The Unicode Standard, table 3-7: the second byte's range
// depends on the first, which is what rules out overlong forms, surrogates
// and code points past U+10FFFF).
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char b0 = byte(0);
  if (b0 < 0x80) return 1;
  std::size_t n = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // the second byte's range
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;  // a continuation byte, C0/C1 (always overlong) or F5..FF
  }
  if (s.size() - i < n) return 0;
  if (byte(1) < lo || byte(1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (byte(k) < 0x80 || byte(k) > 0xBF) return 0;
  }
  return n;
}

// One JSON object into `out`: its braces from construction to destruction,
// a comma before every key but the first.
class object_writer {
 public:
  explicit object_writer(std::string& out) : out_(out) { out_ += '{'; }
  ~object_writer() { out_ += '}'; }
  object_writer(const object_writer&) = delete;
  object_writer& operator=(const object_writer&) = delete;

  std::string& key(std::string_view k) {
    if (!first_) out_ += ',';
    first_ = false;
    out_ += json_quote(k);
    out_ += ':';
    return out_;
  }
  void field(std::string_view k, std::string_view v) { key(k) += json_quote(v); }
  void field(std::string_view k, bool v) { key(k) += v ? "true" : "false"; }
  void field(std::string_view k, std::uint64_t v) { key(k) += std::to_string(v); }
  void field(std::string_view k, std::int64_t v) { key(k) += std::to_string(v); }
  // A ratio in [0, 1], six decimals (what the wire's millionths carry).
  void field(std::string_view k, double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6f", v);
    key(k) += buf;
  }

 private:
  std::string& out_;
  bool first_ = true;
};

void write_placement(std::string& out, const placement& p) {
  object_writer o(out);
  o.field("name", to_string(p));
  o.field("kind", to_string(p.kind));
  o.field("device", std::int64_t{p.device});
  o.field("numa_node", std::int64_t{p.node});  // pageable: -1 = not bound to one node
}

// [f(out, x0),f(out, x1),...]
template <class T, class F>
void write_array(std::string& out, const std::vector<T>& xs, F&& write_one) {
  out += '[';
  for (std::size_t i = 0; i < xs.size(); ++i) {
    if (i != 0) out += ',';
    write_one(out, xs[i]);
  }
  out += ']';
}

}  // namespace

std::string json_quote(std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (std::size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c < 0x20) {
      switch (c) {
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        default:
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
      }
      ++i;
    } else if (const std::size_t n = utf8_length(text, i); n != 0) {
      out.append(text.substr(i, n));
      i += n;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out += '"';
  return out;
}

std::string to_json(const wire::stats_reply& s) {
  std::string out;
  out.reserve(256 + 160 * (s.domains.size() + s.clients.size() + s.buffers.size()));
  {
    object_writer o(out);
    o.field("schema", stats_schema);
    o.field("backend", s.backend);
    o.field("tenant_view", s.tenant_view);
    o.field("more_clients", std::uint64_t{s.more_clients});
    o.field("more_buffers", std::uint64_t{s.more_buffers});
    o.field("buffers_truncated", s.buffers_truncated);

    write_array(o.key("domains"), s.domains, [](std::string& to, const wire::stat_domain& d) {
      object_writer r(to);
      r.field("name", d.name);
      write_placement(r.key("where"), d.where);
      r.field("capacity", d.capacity);
      r.field("used", d.used);
      r.field("delayed_free_bytes", d.delayed_free_bytes);
      r.field("peak_used", d.peak_used);
      r.field("buffers", std::uint64_t{d.buffers});
      r.field("exported_bytes", d.exported_bytes);
      r.field("largest_free_block", d.largest_free_block);
      r.field("fragmentation", static_cast<double>(d.fragmentation_ppm) / 1e6);
    });
    write_array(o.key("clients"), s.clients, [](std::string& to, const wire::stat_client& c) {
      object_writer r(to);
      r.field("owner", std::uint64_t{c.owner});
      r.field("pid", std::int64_t{c.pid});
      r.field("uid", std::uint64_t{c.uid});
      r.field("name", c.name);
      r.field("bytes", c.bytes);
      r.field("buffers", std::uint64_t{c.buffers});
      r.field("freed_exported_bytes", c.freed_exported_bytes);
      r.field("freed_attached_bytes", c.freed_attached_bytes);
      r.field("peak_bytes", c.peak_bytes);
      r.field("total_bytes", c.total_bytes);
    });
    write_array(o.key("buffers"), s.buffers, [](std::string& to, const wire::stat_buffer& b) {
      object_writer r(to);
      r.field("id", b.id);
      r.field("owner", std::uint64_t{b.owner});
      r.field("name", b.name);
      r.field("size", b.size);
      write_placement(r.key("where"), b.where);
      r.field("attachments", std::uint64_t{b.attachments});
      r.field("pins", std::int64_t{b.pins});
      r.field("fences", std::uint64_t{b.fences});
      r.field("generation", b.generation);
      r.field("lost", b.lost);
    });
    std::string& counters = o.key("counters");
    object_writer c(counters);
    for (const auto& k : s.counters) c.field(k.name, k.value);
  }
  return out;
}

}  // namespace xbuf::client
