// SPDX-License-Identifier: MIT
#include "p2p/pci_details.hpp"

#include <pciaccess.h>

#include <cstdio>
#include <cstring>

#include "core/errno_text.hpp"

namespace xbuf::p2p {

namespace {

constexpr std::uint16_t status_register = 0x06;
constexpr std::uint16_t status_cap_list = 0x10;
constexpr std::uint16_t cap_pointer = 0x34;
constexpr std::uint8_t cap_id_pcie = 0x10;
constexpr std::uint16_t ext_cap_start = 0x100;
constexpr std::uint16_t ext_cap_id_acs = 0x0d;
constexpr std::uint16_t acs_control_offset = 0x06;
constexpr std::uint16_t acs_redirect_bits = 0x0004 | 0x0008 | 0x0020;  // RR | CR | EC

// Reads the ACS state of one function; fills acs, acs_control and acs_note.
void read_acs(pci_device* dev, pci_function_details& out) {
  std::uint16_t status = 0;
  if (pci_device_cfg_read_u16(dev, &status, status_register) != 0) {
    out.acs_note = "configuration space not readable";
    return;
  }
  if ((status & status_cap_list) == 0) {
    out.acs = acs_state::absent;
    out.acs_note = "no capability list";
    return;
  }
  // Standard capability list: is this a PCI Express function at all?
  std::uint8_t ptr = 0;
  if (pci_device_cfg_read_u8(dev, &ptr, cap_pointer) != 0) {
    out.acs_note = "capability pointer not readable";
    return;
  }
  bool pcie = false;
  // 48 = the most capabilities that fit in 256 bytes; guards against loops.
  for (int guard = 0; ptr >= 0x40 && guard < 48; ++guard) {
    std::uint8_t id = 0, next = 0;
    if (pci_device_cfg_read_u8(dev, &id, ptr) != 0 ||
        pci_device_cfg_read_u8(dev, &next, static_cast<pciaddr_t>(ptr + 1)) != 0) {
      out.acs_note = "capability list not readable (needs root)";
      return;
    }
    if (id == cap_id_pcie) {
      pcie = true;
      break;
    }
    ptr = static_cast<std::uint8_t>(next & 0xfc);
  }
  if (!pcie) {
    out.acs = acs_state::absent;
    out.acs_note = "conventional PCI function: no extended capabilities";
    return;
  }
  // Extended capabilities: 4096-byte space, each header id:16 ver:4 next:12.
  std::uint16_t off = ext_cap_start;
  for (int guard = 0; off >= ext_cap_start && guard < 1024; ++guard) {
    std::uint32_t header = 0;
    if (pci_device_cfg_read_u32(dev, &header, off) != 0) {
      out.acs_note = "extended configuration space not readable (needs root)";
      return;
    }
    if (header == 0 || header == 0xffffffffu) break;
    if ((header & 0xffffu) == ext_cap_id_acs) {
      std::uint16_t control = 0;
      if (pci_device_cfg_read_u16(dev, &control, static_cast<pciaddr_t>(off + acs_control_offset)) != 0) {
        out.acs_note = "ACS control register not readable";
        return;
      }
      out.acs_control = control;
      out.acs = acs_from_control(control);
      out.acs_note = "ACS capability at 0x" + [&] {
        char buf[8];
        std::snprintf(buf, sizeof buf, "%03x", static_cast<unsigned>(off));
        return std::string(buf);
      }();
      return;
    }
    off = static_cast<std::uint16_t>((header >> 20) & 0xffcu);
  }
  out.acs = acs_state::absent;
  out.acs_note = "no ACS capability";
}

}  // namespace

acs_state acs_from_control(std::uint16_t control) noexcept {
  return (control & acs_redirect_bits) != 0 ? acs_state::redirect : acs_state::no_redirect;
}

result<std::vector<pci_function_details>> read_pci_details() {
  const int err = pci_system_init();
  if (err != 0) {
    return fail(errc::io_error,
                "libpciaccess: cannot initialize: " + errno_text(err));
  }
  std::vector<pci_function_details> out;
  pci_device_iterator* it = pci_slot_match_iterator_create(nullptr);
  if (it == nullptr) {
    pci_system_cleanup();
    return fail(errc::io_error, "libpciaccess: cannot iterate PCI devices");
  }
  while (pci_device* dev = pci_device_next(it)) {
    pci_function_details d;
    d.address = pci_address{dev->domain, dev->bus, dev->dev, dev->func};
    d.vendor_id = dev->vendor_id;
    d.device_id = dev->device_id;
    d.class_code = dev->device_class;
    read_acs(dev, d);
    out.push_back(std::move(d));
  }
  pci_iterator_destroy(it);
  pci_system_cleanup();
  return out;
}

void apply_pci_details(topology& topo, const std::vector<pci_function_details>& details) {
  for (const auto& d : details) {
    if (auto i = topo.find(d.address)) topo.set_acs(*i, d.acs);
  }
}

}  // namespace xbuf::p2p
