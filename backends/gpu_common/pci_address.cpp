// SPDX-License-Identifier: MIT
#include "backends/gpu_common/pci_address.hpp"

#include <cstdio>
#include <fstream>

namespace xbuf::gpu {

namespace {

// Parses a hex field of 1..max_digits digits; advances `s`.
std::optional<unsigned> hex_field(std::string_view& s, std::size_t max_digits) {
  unsigned v = 0;
  std::size_t n = 0;
  while (n < s.size()) {
    const char c = s[n];
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0) break;
    v = v * 16 + static_cast<unsigned>(d);
    ++n;
  }
  if (n == 0 || n > max_digits) return std::nullopt;
  s.remove_prefix(n);
  return v;
}

bool expect(std::string_view& s, char c) {
  if (s.empty() || s.front() != c) return false;
  s.remove_prefix(1);
  return true;
}

}  // namespace

std::optional<std::string> normalize_pci_address(std::string_view raw) {
  while (!raw.empty() && (raw.back() == '\0' || raw.back() == ' ' || raw.back() == '\n')) raw.remove_suffix(1);
  while (!raw.empty() && raw.front() == ' ') raw.remove_prefix(1);

  // With a domain there are two ':' before the '.'.
  const auto dot = raw.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  const bool has_domain = raw.substr(0, dot).find(':') != raw.substr(0, dot).rfind(':');

  unsigned domain = 0;
  std::string_view s = raw;
  if (has_domain) {
    auto d = hex_field(s, 8);
    if (!d || !expect(s, ':')) return std::nullopt;
    domain = *d;
  }
  auto bus = hex_field(s, 2);
  if (!bus || !expect(s, ':')) return std::nullopt;
  auto dev = hex_field(s, 2);
  if (!dev || *dev > 0x1f || !expect(s, '.')) return std::nullopt;
  auto fn = hex_field(s, 1);
  if (!fn || *fn > 7 || !s.empty()) return std::nullopt;
  if (domain > 0xffff) return std::nullopt;  // sysfs has no 8-digit domains on Linux x86/arm

  char buf[16];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", domain, *bus, *dev, *fn);
  return std::string(buf);
}

int numa_node_of_pci_device(const std::string& address) noexcept {
  try {
    std::ifstream in("/sys/bus/pci/devices/" + address + "/numa_node");
    int node = -1;
    if (in >> node) return node < 0 ? -1 : node;
  } catch (...) {
  }
  return -1;
}

}  // namespace xbuf::gpu
