// SPDX-License-Identifier: MIT
#include "core/result.hpp"

namespace xbuf {

std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::ok: return "ok";
    case errc::invalid_argument: return "invalid_argument";
    case errc::not_found: return "not_found";
    case errc::already_exists: return "already_exists";
    case errc::already_signaled: return "already_signaled";
    case errc::timed_out: return "timed_out";
    case errc::cancelled: return "cancelled";
    case errc::would_deadlock: return "would_deadlock";
    case errc::busy: return "busy";
    case errc::out_of_memory: return "out_of_memory";
    case errc::quota_exceeded: return "quota_exceeded";
    case errc::permission_denied: return "permission_denied";
    case errc::unsupported: return "unsupported";
    case errc::io_error: return "io_error";
    case errc::device_lost: return "device_lost";
    case errc::no_device: return "no_device";
    case errc::protocol_error: return "protocol_error";
    case errc::bad_state: return "bad_state";
    case errc::parse_error: return "parse_error";
  }
  return "unknown";
}

int to_errno(errc code) noexcept {
  switch (code) {
    case errc::ok: return 0;
    case errc::invalid_argument: return -EINVAL;
    case errc::not_found: return -ENOENT;
    case errc::already_exists: return -EALREADY;
    case errc::already_signaled: return -EALREADY;
    case errc::timed_out: return -ETIMEDOUT;
    case errc::cancelled: return -EINTR;
    case errc::would_deadlock: return -EDEADLK;
    case errc::busy: return -EBUSY;
    case errc::out_of_memory: return -ENOMEM;
    case errc::quota_exceeded: return -EDQUOT;
    case errc::permission_denied: return -EPERM;
    case errc::unsupported: return -EOPNOTSUPP;
    case errc::io_error: return -EIO;
    case errc::device_lost: return -ENODEV;
    case errc::no_device: return -ENODEV;
    case errc::protocol_error: return -EPROTO;
    case errc::bad_state: return -EINVAL;
    case errc::parse_error: return -EINVAL;
  }
  return -EINVAL;
}

std::string error::describe() const {
  return std::string(to_string(code)) + ": " + message;
}

}  // namespace xbuf
