// SPDX-License-Identifier: MIT
#include "p2p/hwloc_loader.hpp"

#include <hwloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string_view>
#include <utility>

#include "core/errno_text.hpp"
#include "p2p/pci_details.hpp"

namespace xbuf::p2p {

namespace {

// Owns an hwloc topology handle for the length of one load.
struct hwloc_handle {
  hwloc_topology_t topo = nullptr;
  hwloc_handle() = default;
  hwloc_handle(const hwloc_handle&) = delete;
  hwloc_handle& operator=(const hwloc_handle&) = delete;
  ~hwloc_handle() {
    if (topo != nullptr) hwloc_topology_destroy(topo);
  }
};

std::string info(hwloc_obj_t obj, const char* name) {
  const char* v = hwloc_obj_get_info_by_name(obj, name);
  return v != nullptr ? std::string(v) : std::string();
}

std::vector<unsigned> bitmap_indexes(hwloc_const_bitmap_t set) {
  std::vector<unsigned> out;
  if (set == nullptr || hwloc_bitmap_iszero(set) || hwloc_bitmap_isfull(set)) return out;
  for (int i = hwloc_bitmap_first(set); i >= 0; i = hwloc_bitmap_next(set, i)) {
    out.push_back(static_cast<unsigned>(i));
  }
  return out;
}

std::string bitmap_list(hwloc_const_bitmap_t set) {
  if (set == nullptr || hwloc_bitmap_iszero(set)) return {};
  char* s = nullptr;
  if (hwloc_bitmap_list_asprintf(&s, set) < 0 || s == nullptr) return {};
  std::string out(s);
  std::free(s);
  return out;
}

pci_address address_of(const hwloc_obj_attr_u::hwloc_pcidev_attr_s& p) {
  return pci_address{p.domain, p.bus, p.dev, p.func};
}

// Walks hwloc's tree into the model.
class builder {
 public:
  builder(hwloc_topology_t h, topology& out) : h_(h), out_(out) {}

  void walk(hwloc_obj_t obj) {
    for (hwloc_obj_t c = obj->first_child; c != nullptr; c = c->next_sibling) walk(c);
    for (hwloc_obj_t c = obj->io_first_child; c != nullptr; c = c->next_sibling) visit_io(c, -1);
  }

  // The model index of a PCI object, or of the function an OS device sits on.
  int index_of(hwloc_obj_t obj) const {
    for (hwloc_obj_t o = obj; o != nullptr; o = o->parent) {
      auto it = index_.find(o);
      if (it != index_.end()) return it->second;
      if (o->type != HWLOC_OBJ_OS_DEVICE) break;
    }
    return -1;
  }

 private:
  void locality(hwloc_obj_t obj, std::vector<unsigned>& numa, std::string& cpus) const {
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(h_, obj);
    if (anc == nullptr) return;
    numa = bitmap_indexes(anc->nodeset);
    cpus = bitmap_list(anc->cpuset);
  }

  // A PCI object hwloc left without a host bridge (seen in converted v1
  // files) gets a placeholder root bus so every chain ends somewhere.
  int placeholder_host_bridge(hwloc_obj_t obj, const pci_address& a) {
    std::vector<unsigned> numa;
    std::string cpus;
    locality(obj, numa, cpus);
    return out_.add_host_bridge(a.domain, a.bus, a.bus, std::move(numa), std::move(cpus));
  }

  void visit_io(hwloc_obj_t obj, int parent) {
    int self = parent;
    switch (obj->type) {
      case HWLOC_OBJ_BRIDGE: {
        const auto& br = obj->attr->bridge;
        if (br.upstream_type == HWLOC_OBJ_BRIDGE_HOST) {
          std::vector<unsigned> numa;
          std::string cpus;
          locality(obj, numa, cpus);
          self = out_.add_host_bridge(br.downstream.pci.domain, br.downstream.pci.secondary_bus,
                                      br.downstream.pci.subordinate_bus, std::move(numa),
                                      std::move(cpus));
        } else {
          const pci_address a = address_of(br.upstream.pci);
          if (parent < 0) parent = placeholder_host_bridge(obj, a);
          self = out_.add_bridge(parent, a, br.upstream.pci.vendor_id, br.upstream.pci.device_id,
                                 br.downstream.pci.secondary_bus,
                                 br.downstream.pci.subordinate_bus);
        }
        index_[obj] = self;
        break;
      }
      case HWLOC_OBJ_PCI_DEVICE: {
        const auto& p = obj->attr->pcidev;
        const pci_address a = address_of(p);
        if (parent < 0) parent = placeholder_host_bridge(obj, a);
        std::vector<std::string> os;
        std::string model;
        for (hwloc_obj_t c = obj->io_first_child; c != nullptr; c = c->next_sibling) {
          if (c->type != HWLOC_OBJ_OS_DEVICE || c->name == nullptr) continue;
          os.emplace_back(c->name);
          if (model.empty()) model = info(c, "GPUModel");
        }
        if (model.empty()) model = info(obj, "PCIDevice");
        self = out_.add_function(parent, a, p.vendor_id, p.device_id, p.class_id, std::move(os),
                                 std::move(model));
        if (obj->subtype != nullptr && std::string_view(obj->subtype) == "NVSwitch") {
          nvswitches_.push_back(self);
        }
        index_[obj] = self;
        break;
      }
      default:
        // OS devices were collected by their PCI parent; Misc objects carry nothing we use.
        return;
    }
    for (hwloc_obj_t c = obj->io_first_child; c != nullptr; c = c->next_sibling) visit_io(c, self);
  }

 public:
  std::vector<int> nvswitches_;

 private:
  hwloc_topology_t h_;
  topology& out_;
  std::map<hwloc_obj_t, int> index_;
};

void read_cpu(hwloc_topology_t h, topology& out) {
  cpu_info cpu;
  cpu.architecture = info(hwloc_get_root_obj(h), "Architecture");
  for (hwloc_obj_t p = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_PACKAGE, nullptr); p != nullptr;
       p = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_PACKAGE, p)) {
    const std::string vendor = info(p, "CPUVendor");
    if (vendor.empty()) continue;
    cpu.vendor = vendor;
    const std::string family = info(p, "CPUFamilyNumber");
    if (!family.empty()) {
      char* end = nullptr;
      const unsigned long v = std::strtoul(family.c_str(), &end, 10);
      if (end != family.c_str() && *end == '\0') cpu.family = static_cast<unsigned>(v);
    }
    break;
  }
  out.set_cpu(std::move(cpu));
}

// Every NUMA node's OS index. A topology without NUMA objects (some v1
// exports) has none: unknown, not "one node".
void read_numa_nodes(hwloc_topology_t h, topology& out) {
  std::vector<unsigned> nodes;
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_NUMANODE, nullptr); n != nullptr;
       n = hwloc_get_next_obj_by_type(h, HWLOC_OBJ_NUMANODE, n)) {
    nodes.push_back(n->os_index);
  }
  std::sort(nodes.begin(), nodes.end());
  nodes.erase(std::unique(nodes.begin(), nodes.end()), nodes.end());
  out.set_numa_nodes(std::move(nodes));
}

// NVLink / xGMI links from hwloc's distance matrices.
void read_links(hwloc_topology_t h, const builder& b, topology& out) {
  struct matrix_kind {
    const char* name;
    link_kind kind;
  };
  for (const matrix_kind mk : {matrix_kind{"NVLinkBandwidth", link_kind::nvlink},
                               matrix_kind{"XGMIHops", link_kind::xgmi}}) {
    unsigned nr = 4;
    hwloc_distances_s* d[4] = {};
    if (hwloc_distances_get_by_name(h, mk.name, &nr, d, 0) != 0) continue;
    nr = std::min(nr, 4u);
    for (unsigned m = 0; m < nr; ++m) {
      const unsigned n = d[m]->nbobjs;
      auto value = [&](unsigned i, unsigned j) { return d[m]->values[i * n + j]; };
      // Per-link unit for NVLink (see header); xGMI hops: 1 = direct link.
      std::uint64_t unit = 25000;
      if (mk.kind == link_kind::nvlink) {
        bool all25 = true, all20 = true;
        for (unsigned i = 0; i < n; ++i) {
          for (unsigned j = 0; j < n; ++j) {
            const std::uint64_t v = value(i, j);
            if (i == j || v == 0) continue;
            all25 = all25 && v % 25000 == 0;
            all20 = all20 && v % 20000 == 0;
          }
        }
        unit = (!all25 && all20) ? 20000 : 25000;
      }
      std::map<std::pair<int, int>, unsigned> pairs;
      for (unsigned i = 0; i < n; ++i) {
        for (unsigned j = i + 1; j < n; ++j) {
          const int a = b.index_of(d[m]->objs[i]);
          const int c = b.index_of(d[m]->objs[j]);
          if (a < 0 || c < 0 || a == c) continue;  // a Package end, or partitions of one function
          const std::uint64_t v = std::max(value(i, j), value(j, i));
          unsigned count = 0;
          if (mk.kind == link_kind::nvlink) {
            if (v == 0) continue;
            count = static_cast<unsigned>((v + unit / 2) / unit);
            if (count == 0) count = 1;
          } else if (v != 1) {
            continue;
          }
          auto key = std::minmax(a, c);
          unsigned& slot = pairs[{key.first, key.second}];
          slot = std::max(slot, count);
        }
      }
      for (const auto& [key, count] : pairs) out.add_link(key.first, key.second, mk.kind, count);
      hwloc_distances_release(h, d[m]);
    }
  }
}

topology build(hwloc_topology_t h, std::string source) {
  topology out;
  out.set_source(std::move(source));
  builder b(h, out);
  b.walk(hwloc_get_root_obj(h));
  read_cpu(h, out);
  read_numa_nodes(h, out);
  // NVSwitches hwloc recognized by their NVLink peers (one DGX-2 NVSwitch
  // reports class 0000, so the class alone would miss it).
  for (int i : b.nvswitches_) out.set_device_kind(i, device_kind::nvswitch);
  read_links(h, b, out);
  return out;
}

}  // namespace

result<topology> load_topology_xml(const std::string& path) {
  const std::string what = "topology XML '" + path + "'";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    return fail(e == ENOENT ? errc::not_found : errc::io_error,
                what + ": cannot open: " + errno_text(e));
  }
  if (S_ISDIR(st.st_mode)) return fail(errc::invalid_argument, what + ": is a directory");
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int e = errno;
    return fail(e == EACCES ? errc::permission_denied : errc::io_error,
                what + ": cannot open: " + errno_text(e));
  }
  char head[256];
  const std::size_t got = std::fread(head, 1, sizeof head, f);
  std::fclose(f);
  if (got == 0) return fail(errc::parse_error, what + ": file is empty");
  if (std::string_view(head, got).find('<') == std::string_view::npos) {
    return fail(errc::parse_error, what + ": not XML (no '<' in the first bytes)");
  }

  hwloc_handle h;
  if (hwloc_topology_init(&h.topo) != 0) {
    return fail(errc::out_of_memory, what + ": hwloc_topology_init failed");
  }
  hwloc_topology_set_io_types_filter(h.topo, HWLOC_TYPE_FILTER_KEEP_ALL);
  if (hwloc_topology_set_xml(h.topo, path.c_str()) != 0) {
    return fail(errc::parse_error, what + ": hwloc cannot read it as XML: " + errno_text(errno));
  }
  if (hwloc_topology_load(h.topo) != 0) {
    return fail(errc::parse_error,
                what + ": not a valid hwloc topology (hwloc failed to import it: malformed XML, "
                       "or a format newer than this hwloc " HWLOC_VERSION " reads)");
  }
  return build(h.topo, path);
}

result<topology> load_topology_live(std::string* pci_note) {
  hwloc_handle h;
  if (hwloc_topology_init(&h.topo) != 0) {
    return fail(errc::out_of_memory, "live topology: hwloc_topology_init failed");
  }
  hwloc_topology_set_io_types_filter(h.topo, HWLOC_TYPE_FILTER_KEEP_ALL);
  if (hwloc_topology_load(h.topo) != 0) {
    return fail(errc::io_error,
                std::string("live topology: hwloc cannot discover this machine: ") +
                    errno_text(errno));
  }
  topology out = build(h.topo, "live");
  // hwloc's live discovery with every I/O object kept sees the whole root bus.
  out.set_root_buses_complete(true);
  auto details = read_pci_details();
  if (details) {
    apply_pci_details(out, *details);
    if (pci_note != nullptr) {
      std::size_t unknown = 0;
      for (const auto& d : *details) unknown += d.acs == acs_state::unknown ? 1 : 0;
      *pci_note = "libpciaccess: " + std::to_string(details->size()) + " PCI functions read, ACS " +
                  (unknown == 0 ? std::string("known for all")
                                : "unknown for " + std::to_string(unknown));
    }
  } else if (pci_note != nullptr) {
    *pci_note = details.err().message + " (ACS state unknown)";
  }
  return out;
}

}  // namespace xbuf::p2p
