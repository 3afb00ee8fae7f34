// SPDX-License-Identifier: MIT
#include "p2p/rules.hpp"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstdio>
#include <set>

namespace xbuf::p2p {

namespace {

[[maybe_unused]] bool is_function(const topology& topo, int i) {  // used by asserts
  return i >= 0 && static_cast<std::size_t>(i) < topo.nodes().size() &&
         topo.node(i).kind == node_kind::function;
}

std::string ids(const pci_node& n) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04x:%04x", static_cast<unsigned>(n.vendor_id),
                static_cast<unsigned>(n.device_id));
  return buf;
}

std::string root_bus_name(const pci_node& hb) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04x:%02x", static_cast<unsigned>(hb.address.domain),
                static_cast<unsigned>(hb.secondary_bus));
  return buf;
}

// The allow-list of current kernels (RULES.md 1.6), restated as data.
constexpr std::array<allow_list_entry, 30> allow_list{{
    {0x8086, 0x3c00, false, true, "Intel Xeon E5 (Sandy Bridge-EP) DMI2"},
    {0x8086, 0x3c01, false, true, "Intel Xeon E5 (Sandy Bridge-EP) DMI2, PCIe mode"},
    {0x8086, 0x2f00, false, true, "Intel Xeon E5 v3 (Haswell-EP) DMI2"},
    {0x8086, 0x2f01, false, true, "Intel Xeon E5 v3 (Haswell-EP) PCIe Root Port 0"},
    {0x8086, 0x2030, false, false, "Intel Sky Lake-E PCIe Root Port A"},
    {0x8086, 0x2031, false, false, "Intel Sky Lake-E PCIe Root Port B"},
    {0x8086, 0x2032, false, false, "Intel Sky Lake-E PCIe Root Port C"},
    {0x8086, 0x2033, false, false, "Intel Sky Lake-E PCIe Root Port D"},
    {0x8086, 0x2020, false, false, "Intel Sky Lake-E DMI3"},
    {0x8086, 0x09a2, false, false, "Intel Ice Lake Memory Map/VT-d"},
    {0x8086, 0x0b25, false, false, "Intel Sapphire Rapids DSA"},
    {0x8086, 0x0cfe, false, false, "Intel Sapphire Rapids IAX"},
    {0x8086, 0x11fb, false, false, "Intel Granite Rapids-D DSA"},
    {0x8086, 0x1212, false, false, "Intel Diamond Rapids DSA"},
    {0x8086, 0x1216, false, false, "Intel Diamond Rapids IAA"},
    {0x8086, 0x4940, false, false, "Intel QAT 4xxx"},
    {0x8086, 0x4942, false, false, "Intel QAT 401xx"},
    {0x8086, 0x4944, false, false, "Intel QAT 402xx"},
    {0x8086, 0x4946, false, false, "Intel QAT 420xx"},
    {0x8086, 0x4948, false, false, "Intel QAT 6xxx"},
    {0x1ae0, 0x0000, true, false, "Google SoC"},
    {0x10de, 0x2f95, false, false, "NVIDIA CPU root complex"},
    {0x10de, 0x2f96, false, false, "NVIDIA CPU root complex"},
    {0x10de, 0x2f97, false, false, "NVIDIA CPU root complex"},
    {0x10de, 0x2f98, false, false, "NVIDIA CPU root complex"},
    {0x1d17, 0x1003, false, true, "Zhaoxin KX-6000"},
    {0x1d17, 0x1005, false, true, "Zhaoxin KH-40000"},
    {0x1d17, 0x1006, false, true, "Zhaoxin KX-6000G"},
    {0x1d17, 0x1007, false, true, "Zhaoxin KX-7000"},
    {0x1d17, 0x1008, false, false, "Zhaoxin KH-50000"},
}};

// Lowest common ancestor in the tree including host bridges; -1 if the two
// are below different host bridges.
int lowest_common_ancestor(const topology& topo, int a, int b) {
  std::set<int> up_a;
  for (int i = a; i >= 0; i = topo.node(i).parent) up_a.insert(i);
  for (int i = b; i >= 0; i = topo.node(i).parent) {
    if (up_a.count(i) != 0) return i;
  }
  return -1;
}

int bridges_between(const topology& topo, int from, int ancestor) {
  int count = 0;
  for (int i = topo.node(from).parent; i >= 0 && i != ancestor; i = topo.node(i).parent) {
    ++count;
  }
  return count;
}

std::string describe_node(const topology& topo, int i) {
  const pci_node& n = topo.node(i);
  if (n.kind == node_kind::host_bridge) return "host bridge " + root_bus_name(n);
  return n.address.to_string() + " [" + ids(n) + "]";
}

// Sum of links from `dev` to NVSwitch nodes, and the switches reached.
unsigned switch_links(const topology& topo, int dev, std::set<int>& switches) {
  unsigned total = 0;
  for (const auto& l : topo.links()) {
    int other = l.a == dev ? l.b : (l.b == dev ? l.a : -1);
    if (other < 0 || topo.node(other).kind_of_device != device_kind::nvswitch) continue;
    total += l.count;
    switches.insert(other);
  }
  return total;
}

}  // namespace

// ---------------------------------------------------------------------------

std::string path_info::label() const {
  switch (level) {
    case path_level::x: return "X";
    case path_level::nv:
      if (link == link_kind::xgmi) return links ? "XGMI" + std::to_string(links) : "XGMI";
      return "NV" + std::to_string(links);
    case path_level::pix: return "PIX";
    case path_level::pxb: return "PXB";
    case path_level::phb: return "PHB";
    case path_level::node: return "NODE";
    case path_level::sys: return "SYS";
  }
  return "SYS";
}

path_info pcie_path(const topology& topo, int a, int b) {
  assert(is_function(topo, a) && is_function(topo, b));
  if (a == b) return {path_level::x};
  const int l = lowest_common_ancestor(topo, a, b);
  if (l < 0) {
    const auto& na = topo.node(a).numa_nodes;
    const auto& nb = topo.node(b).numa_nodes;
    // NVML decides NODE vs SYS by locality; unknown locality reads as SYS.
    if (!na.empty() && na == nb) return {path_level::node};
    return {path_level::sys};
  }
  if (topo.node(l).kind == node_kind::host_bridge) return {path_level::phb};
  const int ba = bridges_between(topo, a, l);
  const int bb = bridges_between(topo, b, l);
  return {(ba <= 1 && bb <= 1) ? path_level::pix : path_level::pxb};
}

path_info device_path(const topology& topo, int a, int b) {
  assert(is_function(topo, a) && is_function(topo, b));
  if (a == b) return {path_level::x};
  // A direct link wins; several entries for one pair add up.
  unsigned direct = 0;
  bool have_direct = false;
  link_kind kind = link_kind::nvlink;
  for (const auto& l : topo.links()) {
    if ((l.a == a && l.b == b) || (l.a == b && l.b == a)) {
      have_direct = true;
      direct += l.count;
      kind = l.kind;
    }
  }
  if (have_direct) return {path_level::nv, kind, direct};
  // Through NVSwitches. hwloc records GPU-to-switch links only, never the
  // switch-to-switch trunks (DGX-2 joins its two baseboards that way), so the
  // NVSwitches of one machine are taken as one fabric, as on every NVSwitch
  // system built so far. The bonded width is the smaller of the two GPUs'
  // links into it: DGX-2 GPUs have 6 -> NV6 between any two, as nvidia-smi shows.
  std::set<int> sw_a, sw_b;
  const unsigned la = switch_links(topo, a, sw_a);
  const unsigned lb = switch_links(topo, b, sw_b);
  if (la > 0 && lb > 0) return {path_level::nv, link_kind::nvlink, std::min(la, lb)};
  return pcie_path(topo, a, b);
}

const char* to_string(p2pdma_verdict verdict) noexcept {
  switch (verdict) {
    case p2pdma_verdict::bus_addr: return "bus_addr";
    case p2pdma_verdict::thru_host_bridge: return "thru_host_bridge";
    case p2pdma_verdict::not_supported: return "not_supported";
    case p2pdma_verdict::unknown: return "unknown";
  }
  return "unknown";
}

tristate cpu_supports_p2pdma(const cpu_info& cpu) {
  const std::string& arch = cpu.architecture;
  const bool x86 = arch == "x86_64" || arch == "i686" || arch == "i386" || arch == "x86";
  // The kernel's rule is x86-only; POWER, Arm, ... rely on the allow-list alone.
  if (!arch.empty() && !x86) return tristate::no;
  if (cpu.vendor.empty()) return tristate::unknown;
  // The kernel checks the AMD vendor only (not Hygon, not Intel).
  if (cpu.vendor != "AuthenticAMD") return tristate::no;
  if (!cpu.family) return tristate::unknown;
  return *cpu.family >= 0x17 ? tristate::yes : tristate::no;
}

const allow_list_entry* find_allow_list_entry(std::uint16_t vendor_id, std::uint16_t device_id) {
  for (const auto& e : allow_list) {
    if (e.vendor_id == vendor_id && (e.any_device || e.device_id == device_id)) return &e;
  }
  return nullptr;
}

root_bus_device host_bridge_device(const topology& topo, int host_bridge) {
  const pci_node& hb = topo.node(host_bridge);
  assert(hb.kind == node_kind::host_bridge);
  // Direct children of the host bridge that sit on its root bus, lowest devfn first.
  std::vector<int> on_root;
  for (std::size_t i = 0; i < topo.nodes().size(); ++i) {
    const pci_node& n = topo.nodes()[i];
    if (n.parent == host_bridge && n.address.bus == hb.secondary_bus &&
        n.address.domain == hb.address.domain) {
      on_root.push_back(static_cast<int>(i));
    }
  }
  std::sort(on_root.begin(), on_root.end(), [&](int x, int y) {
    return topo.node(x).address.devfn() < topo.node(y).address.devfn();
  });
  root_bus_device out;
  const std::string bus = root_bus_name(hb);
  if (!on_root.empty() && topo.node(on_root.front()).address.devfn() == 0) {
    out.node = on_root.front();
    out.note = "root bus " + bus + " device 00.0";
    return out;
  }
  if (topo.root_buses_complete()) {
    if (on_root.empty()) {
      out.rejected = true;
      out.note = "root bus " + bus + " has no device";
    } else if (topo.node(on_root.front()).kind == node_kind::bridge) {
      out.node = on_root.front();
      out.note = "root bus " + bus + " first device, a Root Port";
    } else {
      out.rejected = true;
      out.note = "root bus " + bus + " first device " + describe_node(topo, on_root.front()) +
                 " is neither 00.0 nor a Root Port";
    }
    return out;
  }
  // A filtered export (lstopo's default) drops most root-bus functions, and
  // on many Intel servers 00.0 is such a function (e.g. 8086:09a2, itself
  // allow-listed): without it the kernel's answer cannot be told. The lowest
  // Root Port present is named so a person can judge.
  out.note = "root bus " + bus + " device 00.0 is not in the input (filtered export?)";
  for (int i : on_root) {
    if (topo.node(i).kind == node_kind::bridge) {
      out.note += "; lowest Root Port present: " + describe_node(topo, i);
      break;
    }
  }
  return out;
}

host_bridge_check check_host_bridges(const topology& topo, int provider, int client) {
  const int hb_a = topo.host_bridge_of(provider);
  const int hb_b = topo.host_bridge_of(client);
  const bool same = hb_a == hb_b;

  struct side {
    tristate ok = tristate::unknown;
    std::string text;
  };
  auto judge = [&](int hb) {
    side s;
    const root_bus_device d = host_bridge_device(topo, hb);
    if (!d.node) {
      s.ok = d.rejected ? tristate::no : tristate::unknown;
      s.text = d.note;
      return s;
    }
    const pci_node& n = topo.node(*d.node);
    const allow_list_entry* e = find_allow_list_entry(n.vendor_id, n.device_id);
    const std::string who = d.note + " " + describe_node(topo, *d.node);
    if (e == nullptr) {
      s.ok = tristate::no;
      s.text = who + " is not on the allow-list";
    } else if (!same && e->same_host_bridge_only) {
      s.ok = tristate::no;
      s.text = who + " (" + e->what + ") is allow-listed only within one host bridge";
    } else {
      s.ok = tristate::yes;
      s.text = who + " (" + e->what + ") is allow-listed";
    }
    return s;
  };

  host_bridge_check out;
  const side a = judge(hb_a);
  if (same) {
    out.allowed = a.ok;
    out.reason = a.text;
    return out;
  }
  const side b = judge(hb_b);
  if (a.ok == tristate::no || b.ok == tristate::no) {
    out.allowed = tristate::no;
  } else if (a.ok == tristate::yes && b.ok == tristate::yes) {
    out.allowed = tristate::yes;
  } else {
    out.allowed = tristate::unknown;
  }
  out.reason = a.text + "; " + b.text;
  return out;
}

p2pdma_result p2pdma(const topology& topo, int provider, int client) {
  assert(is_function(topo, provider) && is_function(topo, client));
  p2pdma_result r;
  if (provider == client) {
    r.verdict = p2pdma_verdict::bus_addr;
    r.hops = 0;
    r.reason = "same PCI function";
    return r;
  }
  const std::vector<int> ca = topo.chain(provider);
  const std::vector<int> cb = topo.chain(client);

  // Walk the provider's chain; every element up to and including the common
  // one is tested for ACS redirect, then the client's chain below it.
  bool any_unknown = false;
  auto test_acs = [&](int i) {
    const acs_state s = topo.node(i).acs;
    if (s == acs_state::redirect) r.acs_redirect_nodes.push_back(i);
    if (s == acs_state::unknown) any_unknown = true;
  };
  int common = -1;
  std::size_t dist_a = 0, dist_b = 0;
  for (dist_a = 0; dist_a < ca.size(); ++dist_a) {
    test_acs(ca[dist_a]);
    const auto it = std::find(cb.begin(), cb.end(), ca[dist_a]);
    if (it != cb.end()) {
      common = ca[dist_a];
      dist_b = static_cast<std::size_t>(it - cb.begin());
      break;
    }
  }

  std::string path_part;
  if (common >= 0) {
    for (std::size_t i = 0; i < dist_b; ++i) test_acs(cb[i]);
    r.hops = static_cast<int>(dist_a + dist_b);
    path_part = "common upstream bridge " + describe_node(topo, common) + ", " +
                std::to_string(r.hops) + " hops";
    if (r.acs_redirect_nodes.empty()) {
      r.verdict = p2pdma_verdict::bus_addr;
      r.acs_assumed = any_unknown;
      r.reason = path_part;
      if (any_unknown) {
        r.reason += "; ACS state unknown on the path, verdict assumes no ACS redirect";
      }
      return r;
    }
    std::string list;
    for (int i : r.acs_redirect_nodes) {
      if (!list.empty()) list += ",";
      list += topo.node(i).address.to_string();
    }
    path_part += "; ACS redirect on " + list +
                 " forces traffic up to the host bridge (pci=disable_acs_redir=" + list + ")";
  } else {
    r.hops = static_cast<int>(ca.size() + cb.size());
    path_part = topo.host_bridge_of(provider) == topo.host_bridge_of(client)
                    ? "no common upstream bridge (different Root Ports of one host bridge), "
                    : "no common upstream bridge (different host bridges), ";
    path_part += std::to_string(r.hops) + " hops";
  }

  const tristate zen = cpu_supports_p2pdma(topo.cpu());
  if (zen == tristate::yes) {
    r.verdict = p2pdma_verdict::thru_host_bridge;
    r.reason = path_part + "; AMD Zen or newer CPU (family >= 0x17) routes peer traffic";
    return r;
  }
  const host_bridge_check hb = check_host_bridges(topo, provider, client);
  if (hb.allowed == tristate::yes) {
    r.verdict = p2pdma_verdict::thru_host_bridge;
    r.reason = path_part + "; " + hb.reason;
  } else if (hb.allowed == tristate::no && zen == tristate::no) {
    r.verdict = p2pdma_verdict::not_supported;
    r.reason = path_part + "; " + hb.reason;
  } else if (hb.allowed == tristate::no) {
    r.verdict = p2pdma_verdict::unknown;
    r.reason = path_part + "; " + hb.reason +
               "; CPU vendor/family unknown (an AMD Zen CPU would allow it)";
  } else {
    r.verdict = p2pdma_verdict::unknown;
    r.reason = path_part + "; host-bridge allow-list check undecidable: " + hb.reason;
  }
  return r;
}

}  // namespace xbuf::p2p
