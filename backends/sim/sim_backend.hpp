// SPDX-License-Identifier: MIT
//
// sim_backend.hpp - a software GPU: devices whose VRAM is memfd-backed host
// memory, a copy engine per device, and fault injection.
//
// Overview
//   Each simulated device has a VRAM capacity (sim_device_config::vram_bytes).
//   allocate_device() gives every block its own memfd mapping and charges it
//   (rounded up to the page size) against that capacity; the memory manager
//   sub-allocates its own arenas from big blocks anyway. device_ptr equals
//   host_ptr: the CPU and the "GPU" see the same bytes (caps.host_mapped_device).
//   Device and host blocks export and import by fd, so another process can map
//   the same VRAM, as with cuMemExportToShareableHandle.
//
//   Copies that touch a device run on that device's copy engine: the
//   destination's if it is device memory, else the source's. Each engine is a
//   thread that waits for the copy's wait_for fences, moves the bytes at
//   sim_config::copy_bytes_per_second and signals a "sim-copy" fence; a
//   device's fences share one context with increasing seqnos and signal in
//   that order. Host-to-host copies go to the internal host backend.
//
//   Fault injection (for tests and the stress test): fail_next_copies() (the
//   fence signals -EIO, the destination is untouched), set_fence_delay()
//   (fences signal later than the copy finished), reset_device() (every copy
//   not yet signaled on that device signals -EIO; the device then works again,
//   or stays lost if asked: allocations, copies and imports on it then fail
//   with errc::device_lost until a reset with sim_reset_mode::recover).
//
// Rules
//   - Host memory (allocate_host) comes from an internal host backend
//     (sim_config::host); see host_backend.hpp for pinning and NUMA rules.
//   - copy() and export_fd() accept only this instance's blocks (device blocks
//     and its internal host backend's blocks, made or imported); a block of
//     another backend instance is errc::unsupported.
//   - Imported device memory is mapped, not allocated: it is not charged
//     against the importing device's VRAM (the exporter's device holds it).
//   - release_range() of VRAM keeps the range's pages, as a GPU keeps its
//     VRAM: the range is restored if an export detached it, never hole-
//     punched, so the next buffer there does not fault the pages in again
//     (the memory manager clears VRAM before a new owner sees it, and a
//     move zeroes its padding). It returns false for a block whose own fd
//     was exported (a whole-block export): its receivers map those pages.
//   - Copies of up to 1 MiB run on the caller's thread when the device's
//     engine is idle (copy_engine.hpp, "inline"): their fence is signaled
//     when copy() returns. Dropped blocks are unmapped on a reclaimer
//     thread, not on the thread that drops them.
//   - can_access_peer() and link_count() answer nullopt: for sim the topology
//     (p2p/, from an hwloc XML) decides.
//   - Destroying the backend signals every unfinished copy's fence with
//     -ECANCELED (queued copies are not run; foreign fences are not waited
//     for). Blocks may outlive the backend. Do not destroy the backend from
//     one of its own fence callbacks.
//   - Every function is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "backends/host/host_backend.hpp"
#include "core/fence.hpp"
#include "core/result.hpp"

namespace xbuf {

struct sim_device_config {
  std::string name;          // "" = "sim<index>"
  std::string pci_address;   // "0000:3b:00.0", as in the topology XML; "" = unknown
  int numa_node = -1;        // as in the topology XML; -1 = unknown
  std::size_t vram_bytes = 0;  // capacity, > 0
};

struct sim_config {
  std::vector<sim_device_config> devices;
  // The simulated machine's NUMA nodes (OS indexes, as in its topology XML),
  // where it has several: host_numa_nodes() reports them, allocate_host()
  // takes them, and the memory manager keeps a pageable heap per node. The
  // sim does not bind such memory (these nodes are not this machine's): its
  // blocks report numa_node -1. Empty: this machine's own nodes, through the
  // internal host backend.
  std::vector<int> numa_nodes;
  double copy_bytes_per_second = 0;  // per engine; 0 = as fast as memcpy
  host_config host{.name = "sim host"};
};

// n devices "sim0".."sim<n-1>" of vram_bytes each, fast copies.
sim_config make_sim_config(int devices, std::size_t vram_bytes);

enum class sim_reset_mode : std::uint8_t {
  recover,  // the device works again once the reset is done (also revives a lost device)
  lose,     // the device stays lost: device_lost on allocate_device, copy, import
};

struct sim_device_stats {
  std::size_t vram_bytes = 0;       // capacity
  std::size_t used_bytes = 0;       // charged by live blocks (page-rounded)
  std::uint64_t live_blocks = 0;
  bool lost = false;
  std::uint64_t copies_completed = 0;
  std::uint64_t copies_failed = 0;
  std::uint64_t bytes_copied = 0;
};

namespace detail {
struct sim_state;
class copy_engine;
}  // namespace detail

class sim_backend final : public backend {
 public:
  ~sim_backend() override;

  // --- Fault injection. Errors: no_device (index out of range). ---

  // The next `count` copies submitted to `device`'s engine fail: their fences
  // signal -EIO (after their wait_for fences) and their destination is not
  // written. Replaces any earlier count. Context: never blocks.
  status fail_next_copies(int device, unsigned count);

  // Copies submitted to `device` from now on signal `extra` after they finish
  // (0 turns it off; clamped to 24 h). A reset cuts a pending delay short.
  // Context: never blocks.
  status set_fence_delay(int device, fence_clock::duration extra);

  // Resets `device`: every copy submitted to its engine and not yet signaled -
  // queued, waiting for fences, in flight or in its fence delay - signals with
  // -EIO, in order, and its destination may be partly written. Returns after
  // those fences signaled. Blocks stay valid (their contents are kept).
  // Context: blocks briefly; called from a fence callback of this device it
  // does not wait (the fences signal right after the callback returns).
  status reset_device(int device, sim_reset_mode mode = sim_reset_mode::recover);

  // Errors: no_device.
  result<sim_device_stats> device_stats(int device) const;

  // The internal host backend behind allocate_host (for its stats and warnings).
  host_backend& host() noexcept { return *host_; }

 private:
  friend result<std::unique_ptr<sim_backend>> create_sim_backend(const sim_config& config);
  sim_backend(backend_caps caps, std::vector<device_info> devices,
              std::shared_ptr<detail::sim_state> state,
              std::vector<std::unique_ptr<detail::copy_engine>> engines,
              std::unique_ptr<host_backend> host, std::vector<int> numa_nodes);

  std::string_view do_name() const noexcept override { return "sim"; }
  result<memory_block_ptr> do_allocate_device(int device, std::size_t bytes) override;
  result<memory_block_ptr> do_allocate_host(std::size_t bytes, bool pinned, int numa_node) override;
  result<fence_ptr> do_fill(const memory_span& dst, std::uint8_t value,
                            std::span<const fence_ptr> wait_for) override;
  result<fence_ptr> do_copy(const memory_span& dst, const memory_span& src,
                            std::span<const fence_ptr> wait_for) override;
  result<exported_memory> do_export_fd(const memory_span& span) override;
  bool do_release_range(const memory_span& span) noexcept override;
  result<memory_block_ptr> do_import_fd(const exported_memory& exported, int device) override;
  std::vector<int> do_host_numa_nodes() const override;

  status check_fault_device(std::string_view what, int device) const;

  std::shared_ptr<detail::sim_state> state_;
  std::unique_ptr<host_backend> host_;
  std::vector<std::unique_ptr<detail::copy_engine>> engines_;  // one per device
  const std::vector<int> numa_nodes_;  // simulated (sim_config::numa_nodes); empty: the host backend's
};

// Creates the devices of `config`, their copy engines and the internal host
// backend. Errors: no_device (config lists no devices), invalid_argument (a
// device with 0 VRAM, duplicate device names, a negative or non-finite copy
// rate), io_error (a thread or hwloc failed).
// Context: blocks briefly; allocates.
result<std::unique_ptr<sim_backend>> create_sim_backend(const sim_config& config);

}  // namespace xbuf
