// SPDX-License-Identifier: MIT
//
// metrics_address.hpp - where `xbufd --metrics HOST:PORT` listens.
//
// Overview
//   The metrics endpoint is plain HTTP with no authentication, so it listens
//   on a loopback address only: whoever can reach it is already on this
//   machine. It shows what every tenant may see anyway (per-domain totals,
//   counters, the number of clients; metrics_text.hpp), nothing of one
//   tenant's own.
//
//   Accepted, and nothing else:
//     127.0.0.1:PORT   any dotted-quad IPv4 literal in 127.0.0.0/8
//     [::1]:PORT       the IPv6 loopback, in brackets
//     localhost:PORT   taken as 127.0.0.1, without a resolver (no name
//                      service call at start, and no surprise when
//                      /etc/hosts maps localhost elsewhere)
//   PORT is a whole number in 0..65535; 0 lets the kernel pick a free port
//   (xbufd prints the one it got).
//
// Rules
//   - Pure and Asio-free (xbufd_main and server.hpp include it). Context:
//     may allocate; never blocks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace xbuf::server {

struct metrics_address {
  std::string host;        // a literal: "127.0.0.1", "127.1.2.3" or "::1" (no brackets)
  std::uint16_t port = 0;  // 0: any free port

  bool is_ipv6() const noexcept { return host.find(':') != std::string::npos; }
  friend bool operator==(const metrics_address&, const metrics_address&) = default;
};

// `text` as a metrics address (the forms above). Errors: invalid_argument
// with a message that says what is wrong ("'0.0.0.0:9100': not a loopback
// address (127.x.x.x, [::1] or localhost)"); the caller adds the flag.
result<metrics_address> parse_metrics_address(std::string_view text);

// "127.0.0.1:9100", "[::1]:9100": the form parse_metrics_address reads.
std::string to_string(const metrics_address& a);

// "http://127.0.0.1:9100/metrics": what xbufd prints once it listens.
std::string metrics_url(const metrics_address& a);

}  // namespace xbuf::server
