// SPDX-License-Identifier: MIT
//
// hwloc_loader.hpp - fills a topology (topology.hpp) from hwloc.
//
// Overview
//   Two sources: the live machine (hwloc's own discovery, every PCI object
//   kept, then ACS and ids from libpciaccess, see pci_details.hpp) or an XML
//   file written by `lstopo --of xml` (hwloc 2.x or 1.x format, as far as the
//   installed hwloc can import it).
//
//   What is taken from hwloc: host bridges (root buses), PCI bridges and
//   functions with ids and class, OS devices below functions (names such as
//   nvml0, cuda0, rsmi0, mlx5_0), NUMA/CPU locality of each host bridge (the
//   nearest non-I/O ancestor), the CPU vendor/family from the first Package
//   that has them, the machine's architecture, and NVLink/xGMI links from
//   the "NVLinkBandwidth" and "XGMIHops" distance matrices.
//
// Rules
//   - hwloc XML never carries ACS state: every node of an XML topology has
//     acs_state::unknown.
//   - hwloc's I/O filter is set to keep everything, so what the file has is
//     what the model has; nothing is invented except a placeholder host bridge
//     for a PCI object hwloc left without one (old v1 files).
//   - NVLink counts: hwloc's NVML backend stores 20000 MB/s per NVLink 1.0
//     link and 25000 per 2.0-4.0 link; the count is the bandwidth divided by
//     whichever of the two divides every value of the matrix.
//   - Errors are values; hwloc's own messages may still appear on stderr.
#pragma once

#include <string>

#include "core/result.hpp"
#include "p2p/topology.hpp"

namespace xbuf::p2p {

// Loads an hwloc XML file.
// Returns: not_found (file missing), permission_denied (unreadable),
//   invalid_argument (a directory, not a file), parse_error (empty, or
//   hwloc cannot import it); each message names the file.
// A valid topology without any PCI object is returned as such (empty
// nodes()); callers say so.
// Context: blocks on file I/O; allocates. Not thread-safe with respect to
// hwloc's environment variables only. Locking: none.
// Ownership: the returned topology owns all its data (no hwloc handles kept).
result<topology> load_topology_xml(const std::string& path);

// Loads the live machine with hwloc and merges libpciaccess details (ACS).
// Returns: io_error if hwloc cannot discover the machine. Missing
// libpciaccess access is not an error: ACS stays unknown, `pci_note` says why.
// Context: blocks (reads sysfs); allocates. Locking: none.
result<topology> load_topology_live(std::string* pci_note = nullptr);

}  // namespace xbuf::p2p
