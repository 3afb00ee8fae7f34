// SPDX-License-Identifier: MIT
//
// protocol.hpp - the xbufd wire format, shared by the daemon and libxbuf.
//
// Overview
//   The ONE place that knows the bytes on the socket. A connection carries
//   frames; each frame is a fixed 24-byte little-endian header followed by a
//   payload of at most max_payload bytes:
//
//     offset size field
//       0     4  magic        0x46554258 ("XBUF" read as little-endian bytes)
//       4     2  version      protocol_version (4)
//       6     2  type         msg_type: a request, reply_bit|request, or an event
//       8     8  request_id   chosen by the client; replies echo it; events carry 0
//      16     4  payload_len  <= max_payload
//      20     4  reserved     must be 0
//
//   Every request gets exactly one reply whose type is reply_bit | request
//   type. A reply payload starts with a status (u32 errc, string message);
//   the typed body follows only when the status is ok. Events (move_notify,
//   fence_signaled, memory_pressure) are pushed by the daemon at any time
//   between replies.
//   The export reply carries one file descriptor as SCM_RIGHTS ancillary data
//   sent with the reply's bytes, and so does an import request (the fd to
//   import, with the request's bytes); nothing else carries fds.
//
//   Payload encoding: integers little-endian at their natural width, bool as
//   one byte 0/1, strings and vectors as a u32 count then the elements, a
//   placement as (u8 kind, i32 index): the GPU for VRAM, the NUMA node for
//   host memory (-1: any; domain.hpp). Each message struct lists its fields
//   once in io(); the same list encodes and decodes it.
//
// Rules
//   - frame_parser is a pure state machine: bytes in, complete / need_more /
//     bad out. No I/O, no allocation beyond the bytes it holds, no throwing.
//   - A bad frame is final for its connection: the parser stays bad; the
//     server answers with a protocol_error reply when the request id is known
//     and closes that connection only.
//   - Decoders never trust a count or a length: they are checked against the
//     bytes present, and every enum against its range; errors name the
//     message and the field.
//   - An enum's range comes from the enum: its *_last constant (next to the
//     enum, or below where the enum's header is not this folder's, tied to
//     it by an exhaustive switch). No decoder writes a range as a number.
//   - Every message fits one frame (DESIGN.md "What bad input gets"). A
//     request's lists and names are capped (the max_* constants below): a
//     request past a cap decodes as invalid_argument naming the message,
//     the field, its count and the cap, so nothing downstream - not even
//     an error message listing the request's items - can outgrow a frame.
//     Replies are bounded by construction: stats lists at most
//     max_stat_clients / max_stat_buffers rows and says how many it left
//     out (stats_reply_max_bytes is the worst case, static_asserted);
//     encode_reply() cuts error messages at max_error_message_bytes and
//     answers a body that still would not fit with an error, never an
//     oversized frame.
#pragma once

#include <cstddef>
#include <concepts>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "allocator/buffer.hpp"
#include "allocator/domain.hpp"
#include "allocator/eviction_policy.hpp"
#include "core/memory_kind.hpp"
#include "core/reservation.hpp"
#include "core/result.hpp"

namespace xbuf::wire {

inline constexpr std::uint32_t magic = 0x46554258;  // bytes 'X' 'B' 'U' 'F'
// 2: stats replies carry the tenant view and overflow counts; map ranges
// are offsets within the buffer's export, not daemon addresses.
inline constexpr std::uint16_t protocol_version = 4;
inline constexpr std::size_t header_size = 24;
inline constexpr std::size_t max_payload = 64 * 1024;

// ---------------------------------------------------------------------------
// Caps: what keeps every message inside one frame. Requests past a cap are
// refused (invalid_argument, see Rules); reply lists are cut to theirs.

// alloc: preferred placements. A daemon has a few domains per device; 16
// covers every domain of an 8-GPU node twice over. (The 13,000
// placements gave a 78 KB out_of_memory message naming each one.)
inline constexpr std::size_t max_placements = 16;
// alloc's buffer name, and what stats shows of any name (a client's name
// from hello is kept to this many bytes).
inline constexpr std::size_t max_name_bytes = 64;
// hello's client_name: longer is refused; the first max_name_bytes are kept.
inline constexpr std::size_t max_client_name_bytes = 256;
// validate: buffers locked in one acquire context.
inline constexpr std::size_t max_validate_buffers = 1024;
// Memory events in one trace reply (each 49 bytes on the wire).
inline constexpr std::size_t max_trace_events = 1024;
// An error reply's message is cut to this many bytes (then "...").
inline constexpr std::size_t max_error_message_bytes = 4096;
// stats rows. The daemon-made lists (domains, counters) are cut to their
// caps too; their labels (backend, domain and counter names) to
// max_stat_label_bytes.
inline constexpr std::size_t max_stat_clients = 128;
inline constexpr std::size_t max_stat_buffers = 352;
inline constexpr std::size_t max_stat_domains = 64;
inline constexpr std::size_t max_stat_counters = 32;
inline constexpr std::size_t max_stat_label_bytes = 32;

enum class msg_type : std::uint16_t {
  hello = 1,
  alloc = 2,
  free = 3,
  share = 4,
  export_fd = 5,
  attach = 6,
  detach = 7,
  map = 8,
  unmap = 9,
  add_client_fence = 10,
  signal_client_fence = 11,
  wait = 12,
  validate = 13,
  cpu_begin = 14,
  cpu_end = 15,
  stats = 16,
  import_fd = 17,
  release = 18,
  trace = 19,
  advise = 20,
  // events, pushed by the daemon
  move_notify = 0x4001,
  fence_signaled = 0x4002,
  memory_pressure = 0x4003,
};
inline constexpr std::uint16_t reply_bit = 0x8000;
// The request and event ranges, for is_request / is_known_type and the
// parser. Requests are numbered first..last without gaps, events likewise;
// a new one goes at the end of its range and moves its *_last constant.
inline constexpr msg_type msg_type_first_request = msg_type::hello;
inline constexpr msg_type msg_type_last_request = msg_type::advise;
inline constexpr msg_type msg_type_first_event = msg_type::move_notify;
inline constexpr msg_type msg_type_last_event = msg_type::memory_pressure;
namespace detail {
// Exhaustive (-Wswitch): a new msg_type is an error here until it is sorted
// into a range and the range's constant follows it.
constexpr bool is_last_of_range(msg_type t) {
  switch (t) {
    case msg_type::hello: case msg_type::alloc: case msg_type::free: case msg_type::share:
    case msg_type::export_fd: case msg_type::attach: case msg_type::detach: case msg_type::map:
    case msg_type::unmap: case msg_type::add_client_fence: case msg_type::signal_client_fence:
    case msg_type::wait: case msg_type::validate: case msg_type::cpu_begin: case msg_type::cpu_end:
    case msg_type::stats: case msg_type::import_fd: case msg_type::release: case msg_type::trace:
    case msg_type::move_notify: case msg_type::fence_signaled:
      return false;
    case msg_type::advise: case msg_type::memory_pressure:
      return true;
  }
  return false;
}
}  // namespace detail
static_assert(detail::is_last_of_range(msg_type_last_request) && detail::is_last_of_range(msg_type_last_event),
              "msg_type grew: update msg_type_last_request / msg_type_last_event");

// "alloc", "reply(alloc)", "move_notify"; "unknown(0x1234)" otherwise.
std::string type_name(std::uint16_t type);
// Is `type` a request this protocol version knows?
bool is_request(std::uint16_t type) noexcept;
// Is `type` a known request, reply or event?
bool is_known_type(std::uint16_t type) noexcept;

struct frame_header {
  std::uint16_t version = protocol_version;
  std::uint16_t type = 0;
  std::uint64_t request_id = 0;
  std::uint32_t payload_len = 0;
};

struct frame {
  frame_header header;
  std::vector<std::uint8_t> payload;
};

// ---------------------------------------------------------------------------
// Payload reader / writer. Field names appear in decode errors.

class writer {
 public:
  writer() = default;
  // A writer for a whole frame: its bytes start with room for the header,
  // which finish_frame() fills in, so a frame is built in one buffer.
  struct framed_t {};
  static constexpr framed_t framed{};
  explicit writer(framed_t) {
    out_.reserve(256);  // most frames; a larger one grows once or twice
    out_.resize(header_size);
  }

  void u8(std::uint8_t v) { out_.push_back(v); }
  void u16(std::uint16_t v) { le(v, 2); }
  void u32(std::uint32_t v) { le(v, 4); }
  void u64(std::uint64_t v) { le(v, 8); }
  void bytes(std::string_view s) { out_.insert(out_.end(), s.begin(), s.end()); }

  template <class T>
  void operator()(const char* /*name*/, const T& v) { put(v); }

  std::vector<std::uint8_t>& out() noexcept { return out_; }

 private:
  void le(std::uint64_t v, int n) {
    const std::size_t at = out_.size();
    out_.resize(at + static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) out_[at + static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(v >> (8 * i));
  }
  void put(bool v) { u8(v ? 1 : 0); }
  void put(std::uint8_t v) { u8(v); }
  void put(std::uint16_t v) { u16(v); }
  void put(std::uint32_t v) { u32(v); }
  void put(std::uint64_t v) { u64(v); }
  void put(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void put(const std::string& s) {
    u32(static_cast<std::uint32_t>(s.size()));
    bytes(s);
  }
  void put(errc c) { u32(static_cast<std::uint32_t>(c)); }
  void put(attach_mode m) { u8(static_cast<std::uint8_t>(m)); }
  void put(fence_usage u) { u8(static_cast<std::uint8_t>(u)); }
  void put(eviction_hint h) { u8(static_cast<std::uint8_t>(h)); }
  void put(memory_kind k) { u8(static_cast<std::uint8_t>(k)); }
  void put(const placement& p) {
    put(p.kind);
    put(static_cast<std::int32_t>(p.kind == memory_kind::device ? p.device : p.node));
  }
  template <class T>
  void put(const std::vector<T>& v) {
    u32(static_cast<std::uint32_t>(v.size()));
    for (const auto& e : v) put(e);
  }
  template <class T>
    requires requires(T t, writer& w) { t.io(w); }
  void put(const T& s) {
    T copy = s;  // io() lists fields once for both directions; the writer only reads them
    copy.io(*this);
  }

  std::vector<std::uint8_t> out_;
};

// The last enumerator of each wire enum that lives in a header this folder
// does not own (memory_kind_last is core/memory_kind.hpp's own). Each is
// tied to its enum by an exhaustive switch: an enumerator added there is an
// unhandled case here (-Wswitch, an error under -Werror) until the constant
// and the switch are updated together.
namespace detail {
constexpr bool is_last(errc c) {
  switch (c) {
    case errc::ok: case errc::invalid_argument: case errc::not_found: case errc::already_exists:
    case errc::already_signaled: case errc::timed_out: case errc::cancelled: case errc::would_deadlock:
    case errc::busy: case errc::out_of_memory: case errc::quota_exceeded: case errc::permission_denied:
    case errc::unsupported: case errc::io_error: case errc::device_lost: case errc::no_device:
    case errc::protocol_error: case errc::bad_state:
      return false;
    case errc::parse_error:
      return true;
  }
  return false;
}
constexpr bool is_last(attach_mode m) {
  switch (m) {
    case attach_mode::pinned: return false;
    case attach_mode::dynamic: return true;
  }
  return false;
}
constexpr bool is_last(fence_usage u) {
  switch (u) {
    case fence_usage::kernel: case fence_usage::write: case fence_usage::read: return false;
    case fence_usage::bookkeep: return true;
  }
  return false;
}
constexpr bool is_last(eviction_hint h) {
  switch (h) {
    case eviction_hint::none: case eviction_hint::done: return false;
    case eviction_hint::keep: return true;
  }
  return false;
}
}  // namespace detail

inline constexpr errc errc_last = errc::parse_error;
static_assert(detail::is_last(errc_last), "errc grew: update errc_last");
inline constexpr attach_mode attach_mode_last = attach_mode::dynamic;
static_assert(detail::is_last(attach_mode_last), "attach_mode grew: update attach_mode_last");
inline constexpr fence_usage fence_usage_last = fence_usage::bookkeep;
static_assert(detail::is_last(fence_usage_last), "fence_usage grew: update fence_usage_last");
inline constexpr eviction_hint eviction_hint_last = eviction_hint::keep;
static_assert(detail::is_last(eviction_hint_last), "eviction_hint grew: update eviction_hint_last");

class reader {
 public:
  reader(std::span<const std::uint8_t> in, std::string_view what) : in_(in), what_(what) {}

  template <class T>
  void operator()(const char* name, T& v) {
    if (!failed_) get(name, v);
  }

  bool failed() const noexcept { return failed_; }
  bool at_end() const noexcept { return pos_ == in_.size(); }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  // The first failure: "alloc: truncated payload at field 'name' (needs 4 bytes, 2 left)".
  const std::string& error_message() const noexcept { return error_; }
  void fail(const char* name, const std::string& why) {
    if (failed_) return;
    failed_ = true;
    error_ = std::string(what_) + ": field '" + name + "': " + why;
  }

 private:
  bool take(const char* name, std::size_t n, std::uint64_t* v) {
    if (remaining() < n) {
      fail(name, "truncated payload (needs " + std::to_string(n) + " bytes, " +
                     std::to_string(remaining()) + " left)");
      return false;
    }
    std::uint64_t x = 0;
    for (std::size_t i = 0; i < n; ++i) x |= std::uint64_t{in_[pos_ + i]} << (8 * i);
    pos_ += n;
    *v = x;
    return true;
  }
  template <class U>
  bool uint(const char* name, U& out) {
    std::uint64_t x = 0;
    if (!take(name, sizeof(U), &x)) return false;
    out = static_cast<U>(x);
    return true;
  }
  void get(const char* name, std::uint8_t& v) { uint(name, v); }
  void get(const char* name, std::uint16_t& v) { uint(name, v); }
  void get(const char* name, std::uint32_t& v) { uint(name, v); }
  void get(const char* name, std::uint64_t& v) { uint(name, v); }
  void get(const char* name, std::int32_t& v) {
    std::uint32_t x = 0;
    if (uint(name, x)) v = static_cast<std::int32_t>(x);
  }
  void get(const char* name, bool& v) {
    std::uint8_t x = 0;
    if (!uint(name, x)) return;
    if (x > 1) return fail(name, "bool is " + std::to_string(x) + ", not 0 or 1");
    v = x == 1;
  }
  void get(const char* name, std::string& s) {
    std::uint32_t n = 0;
    if (!uint(name, n)) return;
    if (n > remaining()) {
      return fail(name, "string length " + std::to_string(n) + " but only " +
                            std::to_string(remaining()) + " bytes left");
    }
    s.assign(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
  }
  // Every wire enum is numbered 0..last without gaps; `last` comes from the
  // enum's own *_last constant, never from a number written here.
  template <class E>
  void enumerated(const char* name, E& v, E last) {
    using U = std::underlying_type_t<E>;
    U x{};
    if (!uint(name, x)) return;
    const auto max = static_cast<std::uint64_t>(last);
    if (static_cast<std::uint64_t>(x) > max) {
      return fail(name, "value " + std::to_string(static_cast<std::uint64_t>(x)) +
                            " out of range (max " + std::to_string(max) + ")");
    }
    v = static_cast<E>(x);
  }
  void get(const char* name, errc& v) {
    std::uint32_t x = 0;
    if (!uint(name, x)) return;
    if (x > static_cast<std::uint32_t>(errc_last)) {
      return fail(name, "unknown error code " + std::to_string(x));
    }
    v = static_cast<errc>(x);
  }
  void get(const char* name, attach_mode& v) { enumerated(name, v, attach_mode_last); }
  void get(const char* name, fence_usage& v) { enumerated(name, v, fence_usage_last); }
  void get(const char* name, eviction_hint& v) { enumerated(name, v, eviction_hint_last); }
  void get(const char* name, memory_kind& v) { enumerated(name, v, memory_kind_last); }
  void get(const char* name, placement& p) {
    get(name, p.kind);
    std::int32_t index = 0;
    get(name, index);
    p.device = p.kind == memory_kind::device ? index : -1;
    p.node = p.kind == memory_kind::device ? -1 : index;
  }
  template <class T>
  void get(const char* name, std::vector<T>& v) {
    std::uint32_t n = 0;
    if (!uint(name, n)) return;
    // Every element takes at least one byte: a count beyond that is a lie.
    if (n > remaining()) {
      return fail(name, "count " + std::to_string(n) + " but only " + std::to_string(remaining()) +
                            " bytes left");
    }
    v.clear();
    v.reserve(n);
    for (std::uint32_t i = 0; i < n && !failed_; ++i) {
      T e{};
      get(name, e);
      v.push_back(std::move(e));
    }
  }
  template <class T>
    requires requires(T t, reader& r) { t.io(r); }
  void get(const char*, T& s) {
    s.io(*this);
  }

  std::span<const std::uint8_t> in_;
  std::string_view what_;
  std::size_t pos_ = 0;
  bool failed_ = false;
  std::string error_;
};

// ---------------------------------------------------------------------------
// Messages. Each has `type` (the request type it is, or answers) and io().
// A request with lists or names also has bounds(): its caps, checked by
// decode_message().

namespace detail {
// "alloc: 13000 placements, at most 16": invalid_argument naming the field.
inline status within_cap(std::string_view message, std::string_view field, std::size_t n,
                         std::size_t cap, std::string_view unit) {
  if (n <= cap) return ok();
  return fail(errc::invalid_argument, std::string(message) + ": " + std::to_string(n) + " " +
                                          std::string(unit) + ", at most " + std::to_string(cap) +
                                          " (field '" + std::string(field) + "')");
}
}  // namespace detail

struct empty_body {
  template <class IO> void io(IO&) {}
};

struct hello_request {
  static constexpr msg_type type = msg_type::hello;
  std::uint32_t version = protocol_version;
  std::string client_name;
  template <class IO> void io(IO& x) { x("version", version); x("client_name", client_name); }
  status bounds() const {
    return detail::within_cap("hello", "client_name", client_name.size(), max_client_name_bytes,
                              "bytes of client_name");
  }
};
struct hello_reply {
  std::uint32_t server_version = protocol_version;
  std::uint32_t owner = 0;
  template <class IO> void io(IO& x) { x("server_version", server_version); x("owner", owner); }
};

inline constexpr std::uint32_t alloc_flag_cpu_access = 1;
inline constexpr std::uint32_t alloc_flag_no_evict = 2;
inline constexpr std::uint32_t alloc_known_flags = 3;

struct alloc_request {
  static constexpr msg_type type = msg_type::alloc;
  std::uint64_t size = 0;
  std::uint64_t alignment = 0;
  std::vector<placement> placements;
  std::uint32_t flags = 0;  // alloc_flag_*
  std::string name;
  template <class IO> void io(IO& x) {
    x("size", size); x("alignment", alignment); x("placements", placements);
    x("flags", flags); x("name", name);
  }
  status bounds() const {
    if (auto s = detail::within_cap("alloc", "placements", placements.size(), max_placements, "placements"); !s) {
      return s;
    }
    return detail::within_cap("alloc", "name", name.size(), max_name_bytes, "bytes of name");
  }
};
struct buffer_reply {
  std::uint64_t buffer = 0;
  template <class IO> void io(IO& x) { x("buffer", buffer); }
};

// Requests that name one object: free, export_fd, detach, unmap, cpu_end,
// release (one export of buffer `id` the asker is done with, its fd and
// every copy it passed on: memory_manager::release_export).
template <msg_type T>
struct id_request {
  static constexpr msg_type type = T;
  std::uint64_t id = 0;
  template <class IO> void io(IO& x) { x("id", id); }
};
using free_request = id_request<msg_type::free>;
using export_request = id_request<msg_type::export_fd>;
using detach_request = id_request<msg_type::detach>;
using unmap_request = id_request<msg_type::unmap>;
using cpu_end_request = id_request<msg_type::cpu_end>;
using release_request = id_request<msg_type::release>;

struct share_request {
  static constexpr msg_type type = msg_type::share;
  std::uint64_t buffer = 0;
  std::uint32_t with = 0;
  template <class IO> void io(IO& x) { x("buffer", buffer); x("with", with); }
};

// The fd travels as SCM_RIGHTS with the reply's bytes.
struct export_reply {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  memory_kind kind = memory_kind::host_pageable;
  template <class IO> void io(IO& x) { x("offset", offset); x("size", size); x("kind", kind); }
};

struct attach_request {
  static constexpr msg_type type = msg_type::attach;
  std::uint64_t buffer = 0;
  std::int32_t device = -1;
  attach_mode mode = attach_mode::dynamic;
  bool peer_capable = false;
  template <class IO> void io(IO& x) {
    x("buffer", buffer); x("device", device); x("mode", mode); x("peer_capable", peer_capable);
  }
};
struct attach_reply {
  std::uint64_t attachment = 0;
  template <class IO> void io(IO& x) { x("attachment", attachment); }
};

struct map_request {
  static constexpr msg_type type = msg_type::map;
  std::uint64_t attachment = 0;
  template <class IO> void io(IO& x) { x("attachment", attachment); }
};
// A piece of a mapped buffer, as an offset within the buffer's export:
// byte `offset` of the buffer is at export_reply::offset + offset in the
// exported fd. Never a daemon address: a pointer of the daemon is useless
// to another process and tells it the daemon's layout (DESIGN.md,
// "A client sees only its own").
struct wire_range {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  template <class IO> void io(IO& x) { x("offset", offset); x("size", size); }
};
struct map_reply {
  placement where;
  std::vector<wire_range> ranges;
  bool peer = false;
  std::string reason;
  std::uint64_t generation = 0;
  std::uint64_t wait_fence = 0;  // 0 = nothing to wait for; else a fence id for wait()
  template <class IO> void io(IO& x) {
    x("where", where); x("ranges", ranges); x("peer", peer); x("reason", reason);
    x("generation", generation); x("wait_fence", wait_fence);
  }
};

struct add_client_fence_request {
  static constexpr msg_type type = msg_type::add_client_fence;
  std::uint64_t buffer = 0;
  fence_usage usage = fence_usage::write;
  std::uint32_t deadline_ms = 0;  // 0 = none; else the daemon signals -ETIMEDOUT after it
  template <class IO> void io(IO& x) { x("buffer", buffer); x("usage", usage); x("deadline_ms", deadline_ms); }
};
struct fence_reply {
  std::uint64_t fence = 0;
  template <class IO> void io(IO& x) { x("fence", fence); }
};

struct signal_client_fence_request {
  static constexpr msg_type type = msg_type::signal_client_fence;
  std::uint64_t fence = 0;
  std::int32_t error = 0;  // 0 or a negative errno
  template <class IO> void io(IO& x) { x("fence", fence); x("error", error); }
};

struct wait_request {
  static constexpr msg_type type = msg_type::wait;
  std::uint64_t fence = 0;
  std::uint32_t timeout_ms = 0;  // 0 = only test
  template <class IO> void io(IO& x) { x("fence", fence); x("timeout_ms", timeout_ms); }
};
// ok status = signaled; the fence's own error (0 or -errno) is here.
struct wait_reply {
  std::int32_t fence_error = 0;
  template <class IO> void io(IO& x) { x("fence_error", fence_error); }
};

struct validate_request {
  static constexpr msg_type type = msg_type::validate;
  std::vector<std::uint64_t> buffers;
  template <class IO> void io(IO& x) { x("buffers", buffers); }
  status bounds() const {
    return detail::within_cap("validate", "buffers", buffers.size(), max_validate_buffers, "buffers");
  }
};
struct validate_reply {
  std::uint32_t promoted = 0, deferred = 0, in_place = 0, no_room = 0;
  template <class IO> void io(IO& x) {
    x("promoted", promoted); x("deferred", deferred); x("in_place", in_place); x("no_room", no_room);
  }
};

struct cpu_begin_request {
  static constexpr msg_type type = msg_type::cpu_begin;
  std::uint64_t buffer = 0;
  bool write = false;
  std::uint32_t timeout_ms = 0;  // 0 = wait as long as it takes
  template <class IO> void io(IO& x) { x("buffer", buffer); x("write", write); x("timeout_ms", timeout_ms); }
};
struct cpu_begin_reply {
  std::uint64_t size = 0;
  template <class IO> void io(IO& x) { x("size", size); }
};

// The fd travels as SCM_RIGHTS with the request's bytes (Overview).
struct import_request {
  static constexpr msg_type type = msg_type::import_fd;
  template <class IO> void io(IO&) {}
};
// The buffer the fd reaches, now usable by this client as if shared with
// it (attach, map, fences). No owner: another tenant's id is not told.
struct import_reply {
  std::uint64_t buffer = 0;
  std::uint64_t size = 0;
  placement where;
  template <class IO> void io(IO& x) { x("buffer", buffer); x("size", size); x("where", where); }
};

// trace: the memory events (allocator/event_log.hpp) after event `since`
// that the asker may see (a tenant: its own uid's clients', as stats), at
// most `max` (<= max_trace_events). Ask again from `next` for more;
// `dropped` counts events the daemon's ring no longer held.
struct trace_request {
  static constexpr msg_type type = msg_type::trace;
  std::uint64_t since = 0;
  std::uint32_t max = max_trace_events;
  template <class IO> void io(IO& x) { x("since", since); x("max", max); }
  status bounds() const { return detail::within_cap("trace", "max", max, max_trace_events, "events"); }
};
// A framework's word on a buffer's next use, for eviction (memory_manager::
// advise): none, done ("not for a while"), keep (last to go - among the
// owner's own buffers only). Owner only. Reply: empty.
struct advise_request {
  static constexpr msg_type type = msg_type::advise;
  std::uint64_t id = 0;
  eviction_hint hint = eviction_hint::none;
  template <class IO> void io(IO& x) { x("id", id); x("hint", hint); }
};
struct trace_event {
  std::uint64_t seq = 0;
  std::uint64_t time_ns = 0;  // since xbufd started (steady clock)
  std::uint8_t kind = 0;      // memory_event_kind: 1 alloc, 2 free, 3 evict, 4 promote, 5 migrate
  std::uint32_t owner = 0;
  std::uint64_t buffer = 0;
  std::uint64_t bytes = 0;
  std::int32_t from = -1, to = -1;  // domain indices, as the stats reply's domains; -1 none
  std::uint32_t notified = 0;       // dynamic attachments told of the move
  template <class IO> void io(IO& x) {
    x("seq", seq); x("time_ns", time_ns); x("kind", kind); x("owner", owner); x("buffer", buffer);
    x("bytes", bytes); x("from", from); x("to", to); x("notified", notified);
  }
};
struct trace_reply {
  std::vector<trace_event> events;
  std::uint64_t next = 0;
  std::uint64_t dropped = 0;
  template <class IO> void io(IO& x) { x("events", events); x("next", next); x("dropped", dropped); }
};

struct stats_request {
  static constexpr msg_type type = msg_type::stats;
  template <class IO> void io(IO&) {}
};
struct stat_domain {
  std::string name;
  placement where;
  std::uint64_t capacity = 0, used = 0, delayed_free_bytes = 0;
  std::uint32_t buffers = 0;
  std::uint64_t peak_used = 0;  // the most `used` has been since xbufd started
  std::uint64_t exported_bytes = 0;  // buffers here with an export not yet released
  std::uint64_t largest_free_block = 0;  // the largest allocation that fits now without eviction
  std::uint32_t fragmentation_ppm = 0;   // 1 - largest_free_block / free bytes, in millionths
  template <class IO> void io(IO& x) {
    x("name", name); x("where", where); x("capacity", capacity); x("used", used);
    x("delayed_free_bytes", delayed_free_bytes); x("buffers", buffers); x("peak_used", peak_used);
    x("exported_bytes", exported_bytes); x("largest_free_block", largest_free_block);
    x("fragmentation_ppm", fragmentation_ppm);
  }
};
struct stat_client {
  std::uint32_t owner = 0;
  std::int32_t pid = 0;
  std::uint32_t uid = 0;
  std::string name;
  std::uint64_t bytes = 0;
  std::uint32_t buffers = 0;
  // Freed by this client but still alive, and charged to it:
  std::uint64_t freed_exported_bytes = 0;  // an export not yet released
  std::uint64_t freed_attached_bytes = 0;  // still attached by an importer
  std::uint64_t peak_bytes = 0;   // the most `bytes` has been since it connected
  std::uint64_t total_bytes = 0;  // all it ever allocated
  template <class IO> void io(IO& x) {
    x("owner", owner); x("pid", pid); x("uid", uid); x("name", name); x("bytes", bytes);
    x("buffers", buffers); x("freed_exported_bytes", freed_exported_bytes);
    x("freed_attached_bytes", freed_attached_bytes); x("peak_bytes", peak_bytes); x("total_bytes", total_bytes);
  }
};
struct stat_buffer {
  std::uint64_t id = 0;
  std::uint32_t owner = 0;
  std::string name;
  std::uint64_t size = 0;
  placement where;
  std::uint32_t attachments = 0;
  std::int32_t pins = 0;
  std::uint32_t fences = 0;
  std::uint64_t generation = 0;
  bool lost = false;
  template <class IO> void io(IO& x) {
    x("id", id); x("owner", owner); x("name", name); x("size", size); x("where", where);
    x("attachments", attachments); x("pins", pins); x("fences", fences);
    x("generation", generation); x("lost", lost);
  }
};
struct stat_counter {
  std::string name;
  std::uint64_t value = 0;
  template <class IO> void io(IO& x) { x("name", name); x("value", value); }
};
// What one client may see (server/stats.hpp, visible_to): a tenant gets
// the clients of its own uid and their buffers, with domains and counters
// as totals over every tenant; the operator (root or the daemon's uid) gets
// every client and buffer. Either way the lists stop at max_stat_clients and
// max_stat_buffers rows; more_* count the rows left out.
struct stats_reply {
  std::string backend;
  std::vector<stat_domain> domains;
  std::vector<stat_client> clients;
  std::vector<stat_buffer> buffers;
  bool buffers_truncated = false;  // more_buffers != 0 (kept for code that reads it)
  std::vector<stat_counter> counters;
  bool tenant_view = false;        // only the asker's own uid's clients and buffers are listed
  std::uint32_t more_clients = 0;  // clients not listed (past max_stat_clients)
  std::uint32_t more_buffers = 0;  // buffers not listed (past max_stat_buffers)
  template <class IO> void io(IO& x) {
    x("backend", backend); x("domains", domains); x("clients", clients); x("buffers", buffers);
    x("buffers_truncated", buffers_truncated); x("counters", counters); x("tenant_view", tenant_view);
    x("more_clients", more_clients); x("more_buffers", more_buffers);
  }
};

// The largest encoded stats reply, from the field sizes (u32 counts before
// lists and strings, a placement is 5 bytes): every list at its cap, every
// name at its longest. tests/server/protocol_test encodes that reply and
// checks it is exactly this many bytes, so a field added to a row without
// updating the sum fails there.
namespace wire_size {
constexpr std::size_t string(std::size_t max_bytes) { return 4 + max_bytes; }
inline constexpr std::size_t placement_bytes = 1 + 4;
inline constexpr std::size_t status = 4 + string(0);  // ok code, empty message
inline constexpr std::size_t stat_domain = string(max_stat_label_bytes) + placement_bytes + 3 * 8 + 4 + 8 + 8 + 8 + 4;
inline constexpr std::size_t stat_client = 4 + 4 + 4 + string(max_name_bytes) + 8 + 4 + 8 + 8 + 8 + 8;
inline constexpr std::size_t stat_buffer = 8 + 4 + string(max_name_bytes) + 8 + placement_bytes + 4 + 4 + 4 + 8 + 1;
inline constexpr std::size_t stat_counter = string(max_stat_label_bytes) + 8;
}  // namespace wire_size
inline constexpr std::size_t stats_reply_max_bytes =
    wire_size::status + wire_size::string(max_stat_label_bytes) +
    4 + max_stat_domains * wire_size::stat_domain +
    4 + max_stat_clients * wire_size::stat_client +
    4 + max_stat_buffers * wire_size::stat_buffer +
    1 +  // buffers_truncated
    4 + max_stat_counters * wire_size::stat_counter +
    1 + 4 + 4;  // tenant_view, more_clients, more_buffers
inline constexpr std::size_t trace_reply_max_bytes =
    wire_size::status + 4 + max_trace_events * (8 + 8 + 1 + 4 + 8 + 8 + 4 + 4 + 4) + 8 + 8;
static_assert(trace_reply_max_bytes <= max_payload, "max_trace_events lets a trace reply outgrow one frame");
static_assert(stats_reply_max_bytes <= max_payload,
              "the stats caps let a reply outgrow one frame: lower max_stat_clients / max_stat_buffers");

struct move_notify_event {
  static constexpr msg_type type = msg_type::move_notify;
  std::uint64_t attachment = 0;
  std::uint64_t buffer = 0;
  placement from;
  placement to;
  template <class IO> void io(IO& x) { x("attachment", attachment); x("buffer", buffer); x("from", from); x("to", to); }
};
struct fence_signaled_event {
  static constexpr msg_type type = msg_type::fence_signaled;
  std::uint64_t fence = 0;
  std::int32_t error = 0;
  template <class IO> void io(IO& x) { x("fence", fence); x("error", error); }
};
// Some client's allocation in `where` found no room even after eviction
// (what stands in the way cannot move: pins, no_evict buffers, a client
// library's cached chunks). Sent to every client, at most once per
// pressure_interval per domain; a client gives back what it holds idle.
// Carries no owner, name or id: only that the domain is short.
struct memory_pressure_event {
  static constexpr msg_type type = msg_type::memory_pressure;
  placement where;
  std::uint64_t bytes = 0;  // what the allocation asked for
  template <class IO> void io(IO& x) { x("where", where); x("bytes", bytes); }
};

// ---------------------------------------------------------------------------
// Frames.

// Header + payload bytes. The payload must fit max_payload (asserted: the
// encoders below keep every message bounded).
std::vector<std::uint8_t> encode_frame(std::uint16_t type, std::uint64_t request_id,
                                       std::vector<std::uint8_t> payload);

// The frame a writer(writer::framed) holds: fills in its header (the
// payload is everything after it, which must fit max_payload: asserted).
std::vector<std::uint8_t> finish_frame(writer& w, std::uint16_t type, std::uint64_t request_id);

// A request or an event (request_id 0).
template <class M>
std::vector<std::uint8_t> encode_message(std::uint64_t request_id, const M& m) {
  writer w(writer::framed);
  w("body", m);
  return finish_frame(w, static_cast<std::uint16_t>(M::type), request_id);
}

std::vector<std::uint8_t> encode_error_reply(std::uint16_t request_type, std::uint64_t request_id,
                                             const error& e);

// The reply to a `request` frame: status, then the body when ok. Always
// one frame: an error's message is cut at max_error_message_bytes, and a
// body that would not fit (a bug: every reply is bounded by its caps)
// becomes an io_error reply saying so instead of breaking the protocol.
template <class R>
std::vector<std::uint8_t> encode_reply(msg_type request, std::uint64_t request_id, const result<R>& r) {
  const auto type = static_cast<std::uint16_t>(request);
  if (!r) return encode_error_reply(type, request_id, r.err());
  writer w(writer::framed);
  w("code", errc::ok);
  w("message", std::string());
  w("body", *r);
  if (const std::size_t payload = w.out().size() - header_size; payload > max_payload) {
    return encode_error_reply(type, request_id,
                              error(errc::io_error, type_name(type) + ": the reply is " +
                                                        std::to_string(payload) +
                                                        " bytes, more than one frame holds (" +
                                                        std::to_string(max_payload) + ")"));
  }
  return finish_frame(w, static_cast<std::uint16_t>(type | reply_bit), request_id);
}
inline std::vector<std::uint8_t> encode_reply(msg_type request, std::uint64_t request_id, const status& s) {
  if (s) return encode_reply(request, request_id, result<empty_body>(empty_body{}));
  return encode_reply(request, request_id, result<empty_body>(s.err()));
}

// Decodes a request or event payload. Errors: protocol_error naming the
// message and field (truncated, out of range, trailing bytes, wrong type);
// invalid_argument for a well-formed request past one of its caps (its
// bounds(): the field, the count and the cap).
template <class M>
result<M> decode_message(const frame& f) {
  if (f.header.type != static_cast<std::uint16_t>(M::type)) {
    return fail(errc::protocol_error, "expected " + type_name(static_cast<std::uint16_t>(M::type)) +
                                          ", got " + type_name(f.header.type));
  }
  const std::string what = type_name(f.header.type);
  reader r(f.payload, what);
  M m{};
  r("body", m);
  if (r.failed()) return fail(errc::protocol_error, r.error_message());
  if (!r.at_end()) {
    return fail(errc::protocol_error, what + ": " + std::to_string(r.remaining()) + " trailing bytes");
  }
  if constexpr (requires { { m.bounds() } -> std::same_as<status>; }) {
    if (auto s = m.bounds(); !s) return std::move(s).err();
  }
  return m;
}

// Decodes a reply to `request`: the daemon's error status as an error value
// (its code and message), or the body. Errors: protocol_error as above.
template <class R>
result<R> decode_reply(msg_type request, const frame& f) {
  const auto want = static_cast<std::uint16_t>(static_cast<std::uint16_t>(request) | reply_bit);
  if (f.header.type != want) {
    return fail(errc::protocol_error, "expected " + type_name(want) + ", got " + type_name(f.header.type));
  }
  const std::string what = type_name(f.header.type);
  reader r(f.payload, what);
  errc code = errc::ok;
  std::string message;
  r("code", code);
  r("message", message);
  R body{};
  if (!r.failed() && code == errc::ok) r("body", body);
  if (r.failed()) return fail(errc::protocol_error, r.error_message());
  if (!r.at_end()) {
    return fail(errc::protocol_error, what + ": " + std::to_string(r.remaining()) + " trailing bytes");
  }
  if (code != errc::ok) return fail(code, std::move(message));
  return body;
}

// ---------------------------------------------------------------------------
// The incremental parser.

enum class parse_status : std::uint8_t { complete, need_more, bad };

struct parse_result {
  parse_status status = parse_status::need_more;
  frame frame_;                               // complete
  std::string error;                          // bad: what was wrong
  std::optional<std::uint64_t> request_id;    // bad: known when the header was readable
  std::uint16_t type = 0;                     // bad: the header's type when known
};

// Feeds bytes in, takes frames out. Checks the header as soon as its 24
// bytes are present (magic, version, reserved, type, payload length), so an
// oversized or garbage frame is rejected before its payload is buffered.
// Context: pure; never blocks; allocates only the buffered bytes.
class frame_parser {
 public:
  // `expect_requests`: the daemon's side (only request types are valid);
  // false: the client's side (replies and events).
  explicit frame_parser(bool expect_requests) : expect_requests_(expect_requests) {}

  // Appends bytes. Must not be called once next() returned bad.
  void feed(std::span<const std::uint8_t> bytes);
  // The next frame if complete, need_more, or bad (then bad forever).
  parse_result next();
  // At end of stream: bad ("truncated frame ...") when bytes of a frame are
  // left over, else need_more (a clean end).
  parse_result finish() const;

  std::size_t buffered() const noexcept { return buf_.size() - pos_; }

 private:
  bool expect_requests_;
  std::vector<std::uint8_t> buf_;
  std::size_t pos_ = 0;  // start of the unparsed bytes in buf_
  bool bad_ = false;
  std::string bad_error_;
};

// Default daemon socket, the same for xbufd and its clients: $XBUF_SOCKET if
// set; else /run/xbuf/xbuf.sock for root; else $XDG_RUNTIME_DIR/xbuf.sock;
// else /run/user/<euid>/xbuf.sock. Never in a world-writable directory.
std::string default_socket_path();

// The domain an encoded memory_pressure event (encode_message's bytes)
// names; nothing for any other frame. For the daemon's send queue, which
// holds frames already encoded.
std::optional<placement> pressure_domain(std::span<const std::uint8_t> encoded);

}  // namespace xbuf::wire
