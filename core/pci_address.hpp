// SPDX-License-Identifier: MIT
//
// pci_address.hpp - a PCI function's address (domain:bus:device.function).
//
// Overview
//   The one key by which the p2p module, the allocator and the GPU backends
//   name a PCI function: "0000:3b:00.0". Ordered like lspci orders devices
//   (domain, bus, device, function), which is also the order of every matrix
//   `xbuf topo` prints.
//
// Rules
//   - Plain value type; no allocation except in to_string().
//   - parse() accepts "dddd:bb:dd.f" and the domain-less "bb:dd.f" (domain 0),
//     hex digits in either case; anything else is invalid_argument. Domains
//     are 32 bits, as Linux has them (VMD and Hyper-V use domains past
//     0xffff), so "10000:00:00.0" is an address.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <optional>
#include <string_view>

#include "core/result.hpp"

namespace xbuf {

struct pci_address {
  std::uint32_t domain = 0;
  std::uint8_t bus = 0;
  std::uint8_t device = 0;    // 0..31
  std::uint8_t function = 0;  // 0..7

  // devfn as the kernel packs it: device << 3 | function.
  [[nodiscard]] constexpr unsigned devfn() const noexcept {
    return (static_cast<unsigned>(device) << 3) | function;
  }

  friend constexpr auto operator<=>(const pci_address&, const pci_address&) = default;

  // "0000:3b:00.0". Context: allocates the string; never fails.
  [[nodiscard]] std::string to_string() const;

  // Returns invalid_argument naming the text when it is not a PCI address.
  // Context: pure; no locking.
  static result<pci_address> parse(std::string_view text);
};

// A runtime's bus id ("00000000:3B:00.0", NUL- or space-padded) in the
// canonical lower-case form ("0000:3b:00.0"), or nullopt when it is not a PCI
// address. The GPU backends use it for device_info::pci_address.
// Context: pure.
std::optional<std::string> normalize_pci_address(std::string_view raw);

}  // namespace xbuf
