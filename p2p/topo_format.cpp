// SPDX-License-Identifier: MIT
#include "p2p/topo_format.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace xbuf::p2p {

namespace {

std::string hex4(unsigned v) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04x", v & 0xffffu);
  return buf;
}

std::string label_prefix(device_kind k) {
  switch (k) {
    case device_kind::gpu: return "GPU";
    case device_kind::nic: return "NIC";
    case device_kind::nvme: return "NVME";
    case device_kind::accelerator: return "ACC";
    default: return "DEV";
  }
}

// "0-1" style list of NUMA nodes; "N/A" when unknown.
std::string numa_list(const std::vector<unsigned>& nodes) {
  if (nodes.empty()) return "N/A";
  std::string out;
  std::size_t i = 0;
  while (i < nodes.size()) {
    std::size_t j = i;
    while (j + 1 < nodes.size() && nodes[j + 1] == nodes[j] + 1) ++j;
    if (!out.empty()) out += ",";
    out += std::to_string(nodes[i]);
    if (j > i) out += "-" + std::to_string(nodes[j]);
    i = j + 1;
  }
  return out;
}

int numa_single(const pci_node& n) {
  return n.numa_nodes.size() == 1 ? static_cast<int>(n.numa_nodes.front()) : -1;
}

std::string device_name(const pci_node& n) {
  if (!n.model.empty()) return n.model;
  if (!n.os_devices.empty()) return n.os_devices.front();
  return "[" + hex4(n.vendor_id) + ":" + hex4(n.device_id) + "]";
}

std::string os_names(const pci_node& n) {
  std::string out;
  for (const auto& s : n.os_devices) out += (out.empty() ? "" : " ") + s;
  return out;
}

std::string short_verdict(const p2pdma_result& r, bool self) {
  if (self) return "X";
  switch (r.verdict) {
    case p2pdma_verdict::bus_addr: return "BUS/" + std::to_string(r.hops);
    case p2pdma_verdict::thru_host_bridge: return "HB/" + std::to_string(r.hops);
    case p2pdma_verdict::not_supported: return "NS";
    case p2pdma_verdict::unknown: return "U/" + std::to_string(r.hops);
  }
  return "U";
}

void json_string(std::ostringstream& o, const std::string& s) {
  o << '"';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (ch) {
      case '"': o << "\\\""; break;
      case '\\': o << "\\\\"; break;
      case '\n': o << "\\n"; break;
      case '\t': o << "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          o << buf;
        } else {
          o << ch;
        }
    }
  }
  o << '"';
}

// Prints a square matrix of `cells` with row/column labels and optional
// trailing columns (CPU/NUMA affinity) per row.
void print_matrix(std::ostringstream& o, const std::vector<std::string>& labels,
                  const std::vector<std::vector<std::string>>& cells,
                  const std::vector<std::string>& extra_heads,
                  const std::vector<std::vector<std::string>>& extra) {
  std::size_t w = 4;
  for (const auto& l : labels) w = std::max(w, l.size());
  for (const auto& row : cells) {
    for (const auto& c : row) w = std::max(w, c.size());
  }
  w += 2;
  auto pad = [&](const std::string& s, std::size_t width) {
    return s + std::string(width > s.size() ? width - s.size() : 1, ' ');
  };
  std::string head = pad("", w);
  for (const auto& l : labels) head += pad(l, w);
  for (const auto& h : extra_heads) head += pad(h, h.size() + 3);
  while (!head.empty() && head.back() == ' ') head.pop_back();
  o << head << '\n';
  for (std::size_t i = 0; i < labels.size(); ++i) {
    std::string line = pad(labels[i], w);
    for (const auto& c : cells[i]) line += pad(c, w);
    if (i < extra.size()) {
      for (std::size_t k = 0; k < extra[i].size(); ++k) {
        line += pad(extra[i][k], extra_heads[k].size() + 3);
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    o << line << '\n';
  }
}

}  // namespace

topo_report build_report(const topology& topo, const runtime_peer_query& runtime) {
  topo_report r;
  r.devices = topo.dma_devices();
  int counters[6] = {};
  for (int i : r.devices) {
    const device_kind k = topo.node(i).kind_of_device;
    r.labels.push_back(label_prefix(k) + std::to_string(counters[static_cast<int>(k)]++));
  }
  const std::size_t n = r.devices.size();
  r.path.assign(n, std::vector<path_info>(n));
  r.pcie.assign(n, std::vector<path_info>(n));
  r.p2p.assign(n, std::vector<p2pdma_result>(n));
  r.runtime.assign(n, std::vector<std::optional<bool>>(n));
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      const int a = r.devices[i], b = r.devices[j];
      r.path[i][j] = device_path(topo, a, b);
      r.pcie[i][j] = pcie_path(topo, a, b);
      // Row = provider (memory owner), column = client.
      r.p2p[i][j] = p2pdma(topo, a, b);
      if (runtime && i != j) r.runtime[i][j] = runtime(topo.node(b).address, topo.node(a).address);
      r.any_acs_assumed = r.any_acs_assumed || r.p2p[i][j].acs_assumed;
    }
  }
  // ACS redirection between GPUs is what silently halves peer bandwidth or
  // breaks P2P; list each offending pair once.
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = i + 1; j < n; ++j) {
      const bool gpus = topo.node(r.devices[i]).kind_of_device == device_kind::gpu &&
                        topo.node(r.devices[j]).kind_of_device == device_kind::gpu;
      const auto& res = r.p2p[i][j];
      if (!gpus || res.acs_redirect_nodes.empty()) continue;
      std::string list;
      for (int x : res.acs_redirect_nodes) {
        list += (list.empty() ? "" : ",") + topo.node(x).address.to_string();
      }
      r.warnings.push_back("ACS redirect on the path between " + r.labels[i] + " and " +
                           r.labels[j] + " (" + list + "): peer traffic is forced through the "
                           "host bridge; p2pdma says " + to_string(res.verdict));
    }
  }
  return r;
}

std::string format_text(const topology& topo, const topo_report& r, bool verbose) {
  std::ostringstream o;
  const cpu_info& cpu = topo.cpu();
  o << "Topology: " << topo.source() << '\n';
  o << "CPU: " << (cpu.vendor.empty() ? "vendor unknown" : cpu.vendor);
  if (cpu.family) o << " family " << *cpu.family;
  o << ", " << (cpu.architecture.empty() ? "architecture unknown" : cpu.architecture);
  const tristate zen = cpu_supports_p2pdma(cpu);
  o << " (AMD Zen p2pdma rule: "
    << (zen == tristate::yes ? "applies" : zen == tristate::no ? "does not apply" : "unknown")
    << ")\n";

  const auto functions = topo.functions();
  if (functions.empty()) {
    o << "No PCI objects in this topology (it was saved without I/O devices): "
         "nothing to compute.\n";
    return o.str();
  }
  std::size_t gpus = 0;
  for (int i : r.devices) gpus += topo.node(i).kind_of_device == device_kind::gpu ? 1 : 0;

  if (gpus == 0) {
    o << "No GPU found. PCI functions (" << functions.size() << "):\n";
    for (int i : functions) {
      const pci_node& n = topo.node(i);
      o << "  " << n.address.to_string() << "  [" << hex4(n.vendor_id) << ":" << hex4(n.device_id)
        << "] class " << hex4(n.class_id) << "  " << to_string(n.kind_of_device);
      if (!n.model.empty()) o << "  " << n.model;
      if (!n.os_devices.empty()) o << "  (" << os_names(n) << ")";
      o << "  NUMA " << numa_list(n.numa_nodes) << '\n';
    }
  }

  o << "\nDMA-capable devices:\n";
  if (r.devices.empty()) o << "  none\n";
  for (std::size_t k = 0; k < r.devices.size(); ++k) {
    const pci_node& n = topo.node(r.devices[k]);
    o << "  " << r.labels[k] << ": " << n.address.to_string() << "  " << device_name(n);
    if (!n.os_devices.empty()) o << "  (" << os_names(n) << ")";
    o << '\n';
  }

  // Matrices like nvidia-smi topo -m / -mp: GPUs and NICs only.
  std::vector<std::size_t> gn;
  for (std::size_t k = 0; k < r.devices.size(); ++k) {
    const device_kind kd = topo.node(r.devices[k]).kind_of_device;
    if (kd == device_kind::gpu || kd == device_kind::nic) gn.push_back(k);
  }
  auto matrix_of = [&](const std::vector<std::vector<path_info>>& m) {
    std::vector<std::vector<std::string>> cells;
    for (std::size_t i : gn) {
      std::vector<std::string> row;
      for (std::size_t j : gn) row.push_back(m[i][j].label());
      cells.push_back(std::move(row));
    }
    return cells;
  };
  std::vector<std::string> gn_labels;
  std::vector<std::vector<std::string>> affinity;
  for (std::size_t k : gn) {
    gn_labels.push_back(r.labels[k]);
    const pci_node& n = topo.node(r.devices[k]);
    if (n.kind_of_device == device_kind::gpu) {
      affinity.push_back({n.cpus.empty() ? "N/A" : n.cpus, numa_list(n.numa_nodes)});
    } else {
      affinity.push_back({});
    }
  }
  if (!gn.empty()) {
    o << "\nTopology matrix (like nvidia-smi topo -m):\n";
    print_matrix(o, gn_labels, matrix_of(r.path), {"CPU Affinity", "NUMA Affinity"}, affinity);
    o << "\nPCIe-only matrix (like nvidia-smi topo -mp):\n";
    print_matrix(o, gn_labels, matrix_of(r.pcie), {"CPU Affinity", "NUMA Affinity"}, affinity);
    o << "\nLegend:\n\n"
         "  X    = Self\n"
         "  SYS  = Connection traversing PCIe as well as the SMP interconnect between NUMA nodes "
         "(e.g., QPI/UPI)\n"
         "  NODE = Connection traversing PCIe as well as the interconnect between PCIe Host "
         "Bridges within a NUMA node\n"
         "  PHB  = Connection traversing PCIe as well as a PCIe Host Bridge (typically the CPU)\n"
         "  PXB  = Connection traversing multiple PCIe bridges (without traversing the PCIe Host "
         "Bridge)\n"
         "  PIX  = Connection traversing at most a single PCIe bridge\n"
         "  NV#  = Connection traversing a bonded set of # NVLinks\n"
         "  XGMI = Connection traversing an AMD xGMI link\n";
    bool any_nic = false;
    for (std::size_t k : gn) {
      const pci_node& n = topo.node(r.devices[k]);
      if (n.kind_of_device != device_kind::nic) continue;
      if (!any_nic) o << "\nNIC Legend:\n\n";
      any_nic = true;
      o << "  " << r.labels[k] << ": "
        << (n.os_devices.empty() ? n.address.to_string() : os_names(n)) << '\n';
    }
  }

  if (!r.devices.empty()) {
    o << "\nLinux p2pdma verdict matrix (row = provider, column = client):\n";
    std::vector<std::vector<std::string>> cells;
    for (std::size_t i = 0; i < r.devices.size(); ++i) {
      std::vector<std::string> row;
      for (std::size_t j = 0; j < r.devices.size(); ++j) {
        row.push_back(short_verdict(r.p2p[i][j], i == j));
      }
      cells.push_back(std::move(row));
    }
    print_matrix(o, r.labels, cells, {}, {});
    o << "\n  BUS/d = bus_addr: common upstream switch, no ACS redirect; d = p2pdma distance\n"
         "  HB/d  = thru_host_bridge: through a host bridge that routes peer traffic\n"
         "  NS    = not_supported: the kernel refuses peer DMA\n"
         "  U/d   = unknown: the input lacks what the rule needs (see reasons)\n";
    bool any_runtime = false;
    for (const auto& row : r.runtime) {
      for (const auto& v : row) any_runtime = any_runtime || v.has_value();
    }
    if (any_runtime) {
      o << "\nGPU runtime peer access (row = exporter, column = importer):\n";
      std::vector<std::vector<std::string>> rc;
      for (std::size_t i = 0; i < r.devices.size(); ++i) {
        std::vector<std::string> row;
        for (std::size_t j = 0; j < r.devices.size(); ++j) {
          row.push_back(i == j ? "X" : !r.runtime[i][j] ? "-" : *r.runtime[i][j] ? "OK" : "NO");
        }
        rc.push_back(std::move(row));
      }
      print_matrix(o, r.labels, rc, {}, {});
    }
    const std::size_t pairs = r.devices.size() * (r.devices.size() - 1) / 2;
    if (pairs > 0) {
      if (pairs <= 64 || verbose) {
        o << "\nReasons:\n";
        for (std::size_t i = 0; i < r.devices.size(); ++i) {
          for (std::size_t j = i + 1; j < r.devices.size(); ++j) {
            o << "  " << r.labels[i] << "-" << r.labels[j] << ": " << to_string(r.p2p[i][j].verdict)
              << ": " << r.p2p[i][j].reason << '\n';
          }
        }
      } else {
        o << "\nReasons: " << pairs << " pairs; use --verbose or --json to see each.\n";
      }
    }
  }

  if (r.any_acs_assumed) {
    o << "\nNote: ACS state is unknown for part of the tree"
      << (topo.source() == "live" ? " (reading it needs root)" : " (hwloc XML carries none)")
      << "; verdicts assume no ACS redirect.\n";
  }
  for (const auto& w : r.warnings) o << "WARNING: " << w << '\n';
  if (gpus == 0) o << "\nNo GPU was found in this topology.\n";
  return o.str();
}

std::string format_json(const topology& topo, const topo_report& r) {
  std::ostringstream o;
  const std::size_t n = r.devices.size();
  o << "{\"schema\":";
  json_string(o, std::string(topo_schema));
  o << ",\"source\":";
  json_string(o, topo.source());
  o << ",\"devices\":[";
  for (std::size_t k = 0; k < n; ++k) {
    const pci_node& d = topo.node(r.devices[k]);
    if (k) o << ',';
    o << "{\"index\":" << k << ",\"kind\":";
    json_string(o, to_string(d.kind_of_device));
    o << ",\"name\":";
    json_string(o, device_name(d));
    o << ",\"pci\":";
    json_string(o, d.address.to_string());
    o << ",\"numa\":" << numa_single(d) << ",\"cpus\":";
    json_string(o, d.cpus);
    o << '}';
  }
  o << ']';
  auto matrix = [&](const char* key, auto cell) {
    o << ",\"" << key << "\":[";
    for (std::size_t i = 0; i < n; ++i) {
      o << (i ? ",[" : "[");
      for (std::size_t j = 0; j < n; ++j) {
        if (j) o << ',';
        cell(i, j);
      }
      o << ']';
    }
    o << ']';
  };
  matrix("path", [&](std::size_t i, std::size_t j) { json_string(o, r.path[i][j].label()); });
  matrix("pcie", [&](std::size_t i, std::size_t j) { json_string(o, r.pcie[i][j].label()); });
  matrix("p2p", [&](std::size_t i, std::size_t j) {
    json_string(o, i == j ? std::string("self") : std::string(to_string(r.p2p[i][j].verdict)));
  });
  matrix("distance", [&](std::size_t i, std::size_t j) { o << r.p2p[i][j].distance(); });
  matrix("reasons", [&](std::size_t i, std::size_t j) { json_string(o, r.p2p[i][j].reason); });
  o << "}\n";
  return o.str();
}

}  // namespace xbuf::p2p
