// SPDX-License-Identifier: MIT
#include "p2p/peer_policy.hpp"

namespace xbuf::p2p {

const char* to_string(peer_decider d) noexcept {
  return d == peer_decider::runtime ? "runtime" : "topology";
}

result<peer_decision> peer_access(const topology& topo, const pci_address& importer,
                                  const pci_address& exporter,
                                  std::optional<bool> runtime_can_access) {
  auto locate = [&](const pci_address& a) -> result<int> {
    const auto i = topo.find(a);
    if (!i || topo.node(*i).kind != node_kind::function) {
      return fail(errc::not_found, "peer access " + importer.to_string() + " -> " +
                                       exporter.to_string() + ": " + a.to_string() +
                                       " is not a PCI function of topology '" + topo.source() +
                                       "'");
    }
    return *i;
  };
  auto imp = locate(importer);
  if (!imp) return std::move(imp).err();
  auto exp = locate(exporter);
  if (!exp) return std::move(exp).err();

  peer_decision d;
  d.runtime = runtime_can_access;
  d.path = device_path(topo, *imp, *exp);
  // The exporter provides the memory; the importer is the DMA client.
  d.pcie = p2pdma(topo, *exp, *imp);

  if (*imp == *exp) {
    d.allowed = runtime_can_access.value_or(true);
    d.decided_by = runtime_can_access.value_or(true) ? peer_decider::topology : peer_decider::runtime;
    d.reason = "same device: local memory, no peer mapping needed";
    return d;
  }

  const bool link = d.path.level == path_level::nv;
  const bool topo_allows = link || d.pcie.allows_peer();
  std::string topo_says;
  if (link) {
    topo_says = d.path.label() + " link between the devices";
  } else {
    topo_says = std::string("PCIe ") + d.path.label() + ", p2pdma " + to_string(d.pcie.verdict) +
                ": " + d.pcie.reason;
  }

  if (runtime_can_access.has_value()) {
    d.allowed = *runtime_can_access;
    d.decided_by = (*runtime_can_access == topo_allows) ? peer_decider::topology
                                                        : peer_decider::runtime;
    if (*runtime_can_access && topo_allows) {
      d.reason = "runtime confirms; " + topo_says;
    } else if (*runtime_can_access) {
      d.reason = "runtime allows although the topology rules do not; " + topo_says;
    } else if (topo_allows) {
      d.reason = "runtime vetoes although the topology rules allow; " + topo_says;
    } else {
      d.reason = "runtime and topology rules both refuse; " + topo_says;
    }
    return d;
  }
  d.allowed = topo_allows;
  d.decided_by = peer_decider::topology;
  if (topo_allows) {
    d.reason = topo_says;
  } else if (d.pcie.verdict == p2pdma_verdict::unknown) {
    d.reason = "not proven reachable, refused; " + topo_says;
  } else {
    d.reason = topo_says;
  }
  return d;
}

}  // namespace xbuf::p2p
