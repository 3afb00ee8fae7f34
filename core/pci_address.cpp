// SPDX-License-Identifier: MIT
#include "core/pci_address.hpp"

#include <charconv>
#include <cstdio>

namespace xbuf {

std::string pci_address::to_string() const {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%04x:%02x:%02x.%x", static_cast<unsigned>(domain),
                static_cast<unsigned>(bus), static_cast<unsigned>(device),
                static_cast<unsigned>(function));
  return buf;
}

namespace {

// Parses exactly `text` as hex no larger than `max`; false on anything else.
bool parse_hex(std::string_view text, unsigned long max, unsigned long& out) {
  if (text.empty()) return false;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, out, 16);
  return ec == std::errc() && ptr == end && out <= max;
}

}  // namespace

result<pci_address> pci_address::parse(std::string_view text) {
  auto bad = [&] {
    return fail(errc::invalid_argument,
                "'" + std::string(text) + "': not a PCI address (expected dddd:bb:dd.f)");
  };
  std::string_view rest = text;
  unsigned long domain = 0;
  // Two colons mean the domain is present.
  if (rest.find(':') != rest.rfind(':')) {
    const auto colon = rest.find(':');
    if (!parse_hex(rest.substr(0, colon), 0xffffffffUL, domain)) return bad();
    rest.remove_prefix(colon + 1);
  }
  const auto colon = rest.find(':');
  const auto dot = rest.find('.');
  if (colon == std::string_view::npos || dot == std::string_view::npos || dot < colon) return bad();
  unsigned long bus = 0, dev = 0, fn = 0;
  if (!parse_hex(rest.substr(0, colon), 0xff, bus) ||
      !parse_hex(rest.substr(colon + 1, dot - colon - 1), 0x1f, dev) ||
      !parse_hex(rest.substr(dot + 1), 7, fn)) {
    return bad();
  }
  return pci_address{static_cast<std::uint32_t>(domain), static_cast<std::uint8_t>(bus),
                     static_cast<std::uint8_t>(dev), static_cast<std::uint8_t>(fn)};
}

std::optional<std::string> normalize_pci_address(std::string_view raw) {
  while (!raw.empty() && (raw.back() == '\0' || raw.back() == ' ' || raw.back() == '\n')) {
    raw.remove_suffix(1);
  }
  while (!raw.empty() && raw.front() == ' ') raw.remove_prefix(1);
  auto parsed = pci_address::parse(raw);
  if (!parsed) return std::nullopt;
  return parsed->to_string();
}

}  // namespace xbuf
