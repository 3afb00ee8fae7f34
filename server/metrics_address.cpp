// SPDX-License-Identifier: MIT
#include "server/metrics_address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/whole_number.hpp"

namespace xbuf::server {

namespace {

error bad(std::string_view text, const std::string& why) {
  return fail(errc::invalid_argument, "'" + std::string(text) + "': " + why);
}

// A dotted-quad IPv4 literal in 127.0.0.0/8; inet_pton takes exactly four
// decimal parts, so "127.1" and "0x7f.0.0.1" are refused.
bool is_ipv4_loopback(const std::string& host) {
  in_addr a{};
  if (::inet_pton(AF_INET, host.c_str(), &a) != 1) return false;
  return (ntohl(a.s_addr) >> 24) == 127;
}

}  // namespace

result<metrics_address> parse_metrics_address(std::string_view text) {
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return bad(text, "no ']' after the IPv6 address");
    host = std::string(text.substr(1, close - 1));
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') return bad(text, "no ':PORT' after ']'");
    port_text = rest.substr(1);
    if (host != "::1") return bad(text, "not a loopback address (127.x.x.x, [::1] or localhost)");
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad(text, "not HOST:PORT (e.g. 127.0.0.1:9100)");
    host = std::string(text.substr(0, colon));
    port_text = text.substr(colon + 1);
    if (host.find(':') != std::string::npos) return bad(text, "an IPv6 address goes in brackets ([::1]:PORT)");
    if (host == "localhost") host = "127.0.0.1";
    if (!is_ipv4_loopback(host)) return bad(text, "not a loopback address (127.x.x.x, [::1] or localhost)");
  }
  const std::optional<std::uint64_t> port = parse_whole_number(port_text, 0, 65535);
  if (!port) return bad(text, "'" + std::string(port_text) + "' is not a port in 0..65535");
  return metrics_address{.host = std::move(host), .port = static_cast<std::uint16_t>(*port)};
}

std::string to_string(const metrics_address& a) {
  const std::string port = std::to_string(a.port);
  return a.is_ipv6() ? "[" + a.host + "]:" + port : a.host + ":" + port;
}

std::string metrics_url(const metrics_address& a) { return "http://" + to_string(a) + "/metrics"; }

}  // namespace xbuf::server
