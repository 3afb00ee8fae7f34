// SPDX-License-Identifier: MIT
//
// result.hpp - errors as values for every xbuf API.
//
// Overview
//   xbuf library code does not throw across its API. A function that can fail
//   returns result<T> (or status = result<void>): either a value, or an
//   xbuf::error made of a machine-readable code and a message that names the
//   object and the reason ("buffer 42: not attached for device gpu1").
//
// Rules
//   - Messages name what was wrong; callers add context with error::prefixed.
//   - Freeing, unmapping, signaling and destructors never fail, so they return
//     void, not status.
//   - Accessing value() of an error result is a programming error (asserted).
#pragma once

#include <cassert>
#include <cerrno>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace xbuf {

// Error codes. Numbers are stable: they travel on the wire (server/protocol).
enum class errc : int {
  ok = 0,
  invalid_argument = 1,   // a size, flag, id or name that cannot be right
  not_found = 2,          // unknown id, or an id that belongs to another client
  already_exists = 3,     // double attach, lock already held by this context
  already_signaled = 4,   // a fence call that came too late (not the fence's error)
  timed_out = 5,          // a wait's timeout passed
  cancelled = 6,          // a wait was cancelled (user-space -ERESTARTSYS)
  would_deadlock = 7,     // wound-wait: this (younger) context must back off
  busy = 8,               // trylock failed, or the object has pending work
  out_of_memory = 9,      // a domain is full and nothing could be evicted
  quota_exceeded = 10,    // an owner's quota or the pinned cap would be passed
  permission_denied = 11,
  unsupported = 12,       // this backend or topology cannot do it
  io_error = 13,          // a device, file or socket failed
  device_lost = 14,       // a device vanished or was reset
  no_device = 15,         // no such device, or a runtime without devices
  protocol_error = 16,    // malformed, truncated or oversized frame
  bad_state = 17,         // call not valid now (double free, map without attach)
  parse_error = 18,       // a file (e.g. topology XML) could not be parsed
};

// Short stable name of a code ("out_of_memory"), for logs and the wire.
std::string_view to_string(errc code) noexcept;

// The closest negative errno, for fences and the C ABI (e.g. -ENOMEM).
int to_errno(errc code) noexcept;

struct error {
  errc code = errc::ok;
  std::string message;

  error() = default;
  error(errc c, std::string msg) : code(c), message(std::move(msg)) {}

  // "context: message" with the same code, for callers that add the object
  // they were working on.
  [[nodiscard]] error prefixed(std::string_view context) const {
    return error(code, std::string(context) + ": " + message);
  }
  // "out_of_memory: vram0 is full ..." - what a person reads.
  [[nodiscard]] std::string describe() const;
};

template <class T>
class [[nodiscard]] result {
 public:
  result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  result(error e) : v_(std::move(e)) { assert(std::get<error>(v_).code != errc::ok); }  // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { assert(has_value()); return std::get<0>(v_); }
  const T& value() const& { assert(has_value()); return std::get<0>(v_); }
  T&& value() && { assert(has_value()); return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const error& err() const& { assert(!has_value()); return std::get<error>(v_); }
  error&& err() && { assert(!has_value()); return std::get<error>(std::move(v_)); }
  errc code() const noexcept { return has_value() ? errc::ok : std::get<error>(v_).code; }

 private:
  std::variant<T, error> v_;
};

template <>
class [[nodiscard]] result<void> {
 public:
  result() = default;
  result(error e) : e_(std::move(e)) { assert(e_.code != errc::ok); }  // NOLINT

  bool has_value() const noexcept { return e_.code == errc::ok; }
  explicit operator bool() const noexcept { return has_value(); }
  const error& err() const& { assert(!has_value()); return e_; }
  error&& err() && { assert(!has_value()); return std::move(e_); }
  errc code() const noexcept { return e_.code; }

 private:
  error e_;
};

using status = result<void>;

inline status ok() { return {}; }

// Builds an error from a code and a message: fail(errc::not_found, "buffer 7: no such buffer").
inline error fail(errc code, std::string message) { return error(code, std::move(message)); }

}  // namespace xbuf
