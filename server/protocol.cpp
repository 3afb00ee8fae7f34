// SPDX-License-Identifier: MIT
#include "server/protocol.hpp"

#include <unistd.h>

#include <cassert>
#include <cstdio>
#include <cstdlib>

namespace xbuf::wire {

namespace {

std::string_view request_name(std::uint16_t t) noexcept {
  switch (static_cast<msg_type>(t)) {
    case msg_type::hello: return "hello";
    case msg_type::alloc: return "alloc";
    case msg_type::free: return "free";
    case msg_type::share: return "share";
    case msg_type::export_fd: return "export";
    case msg_type::attach: return "attach";
    case msg_type::detach: return "detach";
    case msg_type::map: return "map";
    case msg_type::unmap: return "unmap";
    case msg_type::add_client_fence: return "add_client_fence";
    case msg_type::signal_client_fence: return "signal_client_fence";
    case msg_type::wait: return "wait";
    case msg_type::validate: return "validate";
    case msg_type::cpu_begin: return "cpu_begin";
    case msg_type::cpu_end: return "cpu_end";
    case msg_type::stats: return "stats";
    case msg_type::import_fd: return "import";
    case msg_type::release: return "release";
    case msg_type::trace: return "trace";
    case msg_type::advise: return "advise";
    case msg_type::move_notify: return "move_notify";
    case msg_type::fence_signaled: return "fence_signaled";
    case msg_type::memory_pressure: return "memory_pressure";
  }
  return {};
}

std::uint64_t load_le(const std::uint8_t* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{p[i]} << (8 * i);
  return v;
}

std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

bool is_request(std::uint16_t type) noexcept {
  return type >= static_cast<std::uint16_t>(msg_type_first_request) &&
         type <= static_cast<std::uint16_t>(msg_type_last_request);
}

bool is_known_type(std::uint16_t type) noexcept {
  if (is_request(type)) return true;
  if ((type & reply_bit) != 0) return is_request(static_cast<std::uint16_t>(type & ~reply_bit));
  return type >= static_cast<std::uint16_t>(msg_type_first_event) &&
         type <= static_cast<std::uint16_t>(msg_type_last_event);
}

std::string type_name(std::uint16_t type) {
  if (!is_known_type(type)) return "unknown(" + hex(type) + ")";
  if ((type & reply_bit) != 0) {
    return "reply(" + std::string(request_name(static_cast<std::uint16_t>(type & ~reply_bit))) + ")";
  }
  return std::string(request_name(type));
}

std::vector<std::uint8_t> encode_frame(std::uint16_t type, std::uint64_t request_id,
                                       std::vector<std::uint8_t> payload) {
  assert(payload.size() <= max_payload);
  writer w;
  w.out().reserve(header_size + payload.size());
  w.u32(magic);
  w.u16(protocol_version);
  w.u16(type);
  w.u64(request_id);
  w.u32(static_cast<std::uint32_t>(payload.size()));
  w.u32(0);
  w.out().insert(w.out().end(), payload.begin(), payload.end());
  return std::move(w.out());
}

std::vector<std::uint8_t> finish_frame(writer& w, std::uint16_t type, std::uint64_t request_id) {
  auto& bytes = w.out();
  assert(bytes.size() >= header_size && bytes.size() - header_size <= max_payload);
  std::size_t at = 0;
  auto le = [&](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes[at++] = static_cast<std::uint8_t>(v >> (8 * i));
  };
  le(magic, 4);
  le(protocol_version, 2);
  le(type, 2);
  le(request_id, 8);
  le(bytes.size() - header_size, 4);
  le(0, 4);  // reserved
  return std::move(bytes);
}

std::vector<std::uint8_t> encode_error_reply(std::uint16_t request_type, std::uint64_t request_id,
                                             const error& e) {
  // A message naming many things (each domain tried, each holder) must
  // not make the reply outgrow its frame: its head says what went wrong.
  static_assert(8 + max_error_message_bytes + 3 <= max_payload);
  std::string message = e.message;
  if (message.size() > max_error_message_bytes) {
    message.resize(max_error_message_bytes);
    message += "...";
  }
  writer w(writer::framed);
  w("code", e.code);
  w("message", message);
  return finish_frame(w, static_cast<std::uint16_t>(request_type | reply_bit), request_id);
}

void frame_parser::feed(std::span<const std::uint8_t> bytes) {
  assert(!bad_);
  // Compact before growing so a long-lived connection's buffer stays about
  // one frame large.
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  } else if (pos_ > max_payload) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
}

parse_result frame_parser::next() {
  parse_result r;
  if (bad_) {
    r.status = parse_status::bad;
    r.error = bad_error_;
    return r;
  }
  if (buffered() < header_size) return r;  // need_more
  const std::uint8_t* p = buf_.data() + pos_;
  const auto m = static_cast<std::uint32_t>(load_le(p, 4));
  frame_header h;
  h.version = static_cast<std::uint16_t>(load_le(p + 4, 2));
  h.type = static_cast<std::uint16_t>(load_le(p + 6, 2));
  h.request_id = load_le(p + 8, 8);
  h.payload_len = static_cast<std::uint32_t>(load_le(p + 16, 4));
  const auto reserved = static_cast<std::uint32_t>(load_le(p + 20, 4));

  auto bad = [&](std::string why, bool id_known) {
    bad_ = true;
    bad_error_ = std::move(why);
    r.status = parse_status::bad;
    r.error = bad_error_;
    if (id_known) {
      r.request_id = h.request_id;
      r.type = h.type;
    }
    return r;
  };
  // Garbage: nothing in the header can be trusted, not even the request id.
  if (m != magic) return bad("bad magic " + hex(m) + " (expected " + hex(magic) + ")", false);
  if (h.version != protocol_version) {
    return bad("unsupported protocol version " + std::to_string(h.version) + " (this side speaks " +
                   std::to_string(protocol_version) + ")",
               true);
  }
  if (reserved != 0) return bad("reserved header field is " + hex(reserved) + ", not 0", true);
  if (h.payload_len > max_payload) {
    return bad("oversized frame: payload of " + std::to_string(h.payload_len) + " bytes (limit " +
                   std::to_string(max_payload) + ")",
               true);
  }
  const bool type_ok = expect_requests_ ? is_request(h.type) : (is_known_type(h.type) && !is_request(h.type));
  if (!type_ok) {
    return bad(std::string("unknown message type ") + hex(h.type) + " for a " +
                   (expect_requests_ ? "request" : "reply or event"),
               true);
  }
  if (buffered() < header_size + h.payload_len) return r;  // need_more
  r.status = parse_status::complete;
  r.frame_.header = h;
  r.frame_.payload.assign(p + header_size, p + header_size + h.payload_len);
  pos_ += header_size + h.payload_len;
  return r;
}

parse_result frame_parser::finish() const {
  parse_result r;
  if (bad_) {
    r.status = parse_status::bad;
    r.error = bad_error_;
    return r;
  }
  if (buffered() == 0) return r;
  r.status = parse_status::bad;
  if (buffered() < header_size) {
    r.error = "truncated frame: stream ended after " + std::to_string(buffered()) + " of " +
              std::to_string(header_size) + " header bytes";
  } else {
    const auto len = load_le(buf_.data() + pos_ + 16, 4);
    r.error = "truncated frame: stream ended after " + std::to_string(buffered() - header_size) + " of " +
              std::to_string(len) + " payload bytes";
    r.request_id = load_le(buf_.data() + pos_ + 8, 8);
  }
  return r;
}

std::optional<placement> pressure_domain(std::span<const std::uint8_t> encoded) {
  if (encoded.size() < header_size) return std::nullopt;
  frame f;
  f.header.type = static_cast<std::uint16_t>(load_le(encoded.data() + 6, 2));
  if (f.header.type != static_cast<std::uint16_t>(msg_type::memory_pressure)) return std::nullopt;
  f.payload.assign(encoded.begin() + header_size, encoded.end());
  auto e = decode_message<memory_pressure_event>(f);
  if (!e) return std::nullopt;
  return e->where;
}

std::string default_socket_path() {
  // XBUF_SOCKET first, so the daemon, `xbuf` and the C ABI agree on it.
  if (const char* e = std::getenv("XBUF_SOCKET"); e != nullptr && *e != '\0') return e;
  // Never a world-writable directory (/tmp): whoever binds a path there
  // first receives every client's hello (DESIGN.md "The socket is the
  // daemon's"). /run/xbuf is root's; the runtime directory is the user's own
  // (0700), and /run/user/<uid> is what it is where a login manager set one up.
  if (::geteuid() == 0) return "/run/xbuf/xbuf.sock";
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x != nullptr && *x != '\0') {
    return std::string(x) + "/xbuf.sock";
  }
  return "/run/user/" + std::to_string(::geteuid()) + "/xbuf.sock";
}

}  // namespace xbuf::wire
