// SPDX-License-Identifier: MIT
#include "p2p/allocator_bridge.hpp"

#include <string>

#include "p2p/peer_policy.hpp"

namespace xbuf::p2p {

result<sim_config> sim_config_from_topology(const topology& topo, std::size_t vram_bytes) {
  if (vram_bytes == 0) return fail(errc::invalid_argument, "sim from topology: vram_bytes is 0");
  sim_config cfg;
  for (int index : topo.dma_devices()) {
    const auto& n = topo.node(index);
    if (n.kind_of_device != device_kind::gpu) continue;
    sim_device_config d;
    const std::string ordinal = std::to_string(cfg.devices.size());
    d.name = "sim" + ordinal + (n.model.empty() ? "" : " (" + n.model + ")");
    d.pci_address = n.address.to_string();
    // A device whose locality spans several nodes (or none) has no one home.
    d.numa_node = n.numa_nodes.size() == 1 ? static_cast<int>(n.numa_nodes.front()) : -1;
    d.vram_bytes = vram_bytes;
    cfg.devices.push_back(std::move(d));
  }
  // A machine of several NUMA nodes gets them simulated (one pageable heap
  // each in the manager); one node is no choice to make.
  if (topo.numa_nodes().size() > 1) {
    for (unsigned n : topo.numa_nodes()) cfg.numa_nodes.push_back(static_cast<int>(n));
  }
  if (cfg.devices.empty()) {
    return fail(errc::no_device, "sim from topology " + topo.source() + ": no GPU among its " +
                                     std::to_string(topo.functions().size()) + " PCI functions");
  }
  return cfg;
}

peer_policy_fn make_peer_policy(std::shared_ptr<const topology> topo, backend& be) {
  return [topo = std::move(topo), &be](int importer, int exporter) -> xbuf::peer_decision {
    const auto devices = be.devices();
    auto runtime = be.can_access_peer(importer, exporter);
    const std::optional<bool> said = runtime && runtime->has_value() ? std::optional<bool>(**runtime)
                                                                     : std::nullopt;
    auto address_of = [&](int d) -> result<pci_address> {
      const auto& text = devices[static_cast<std::size_t>(d)].pci_address;
      if (text.empty()) {
        return fail(errc::not_found, "device " + std::to_string(d) + " has no PCI address");
      }
      return pci_address::parse(text);
    };
    auto a = address_of(importer);
    auto b = address_of(exporter);
    if (!a || !b) {
      const std::string why = (!a ? a.err().message : b.err().message) + ": no topology verdict";
      if (said) return {*said, std::string(be.name()) + " runtime " + (*said ? "allows" : "vetoes") + "; " + why};
      return {false, why};
    }
    auto verdict = peer_access(*topo, *a, *b, said);
    if (!verdict) return {false, verdict.err().message};
    return {verdict->allowed, verdict->reason};
  };
}

}  // namespace xbuf::p2p
