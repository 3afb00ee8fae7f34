// SPDX-License-Identifier: MIT
//
// host_backend.hpp - system memory as a backend: pageable and pinned, NUMA
// aware, shareable by file descriptor. No devices.
//
// Overview
//   Every block is its own memfd, mapped MAP_SHARED, so any block can be
//   exported to another process by fd (export_fd dups the memfd; import_fd
//   maps what it is given). Pinned blocks are mlock()ed. On a machine with
//   several NUMA nodes a block asked for a node is bound there with hwloc
//   (hwloc_set_area_membind, before its pages are first touched). Copies
//   between host blocks run on one copy thread and return a fence; fences of
//   one host backend signal in submission order (driver_name "host-copy").
//
// Rules
//   - Pinned bytes are capped by host_config::pinned_limit_bytes: a pinned
//     allocation that would pass it fails with errc::quota_exceeded naming the
//     cap, the request and what is pinned now. The check and the charge are one
//     step ("reserve, then pin"), so concurrent allocations cannot overshoot.
//   - If the kernel refuses mlock (RLIMIT_MEMLOCK without CAP_IPC_LOCK, or no
//     memory), the allocation fails with errc::out_of_memory naming the limit -
//     unless host_config::pinned_fallback_unlocked is set: then the block is
//     handed out as host_pinned but NOT page-locked, still charged against the
//     pinned cap, and the backend records it (stats().unlocked_pinned_blocks,
//     warnings()). Nothing pretends silently.
//   - numa_node: -1 = no binding; otherwise it must be the OS index of one of
//     the machine's NUMA nodes (numa_nodes()), else errc::invalid_argument. On a
//     one-node machine nothing is bound (all memory is on that node) and the
//     block reports the node.
//   - allocate_host() always gives fresh memfd pages (zero); reusing freed
//     blocks is the memory manager's pool (allocator/host_heap.hpp), which
//     asks release_range() whether a block may hold another buffer:
//     release_range() restores a range an export detached and keeps the
//     pages (no hole punch: the next buffer does not fault them in again),
//     and returns false for a block whose own fd was exported.
//   - Dropped blocks are unmapped and closed on a reclaimer thread (locked
//     ones at once, so RLIMIT_MEMLOCK never counts them twice); copies of
//     up to 1 MiB run on the caller's thread when the copy thread is idle
//     (copy_engine.hpp, "inline").
//   - Blocks may outlive the backend: they keep the accounting they return
//     to alive. Destroying the backend signals every unfinished copy's fence
//     with -ECANCELED.
//   - copy() accepts only blocks this backend instance made or imported;
//     anything else is errc::unsupported.
//   - Every function is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "backends/backend.hpp"
#include "core/result.hpp"

namespace xbuf {

struct host_config {
  // Names the backend in messages and its memfds ("host", "sim0 host").
  std::string name = "host";
  // Cap on pinned bytes held at once by this backend (its blocks, not imports).
  std::size_t pinned_limit_bytes = std::numeric_limits<std::size_t>::max();
  // When mlock is refused: false (default) -> out_of_memory; true -> hand out
  // unlocked memory as host_pinned and record a warning (see Rules).
  bool pinned_fallback_unlocked = false;
};

struct host_stats {
  std::size_t pinned_bytes = 0;            // charged against the pinned cap now
  std::size_t pageable_bytes = 0;          // pageable blocks alive now
  std::uint64_t unlocked_pinned_blocks = 0;  // pinned blocks handed out unlocked (fallback), ever
  std::uint64_t copies_completed = 0;
  std::uint64_t copies_failed = 0;
  std::uint64_t bytes_copied = 0;
};

namespace detail {
struct host_state;
class copy_engine;
}  // namespace detail

class host_backend final : public backend {
 public:
  ~host_backend() override;

  // OS indexes of the machine's NUMA nodes as hwloc sees them ({0} on most laptops).
  const std::vector<int>& numa_nodes() const noexcept { return numa_nodes_; }

  // Context: never blocks for long; takes the accounting lock (a leaf).
  host_stats stats() const;
  // What the backend had to do differently than asked (mlock fallbacks), oldest first.
  std::vector<std::string> warnings() const;

  // True if `block` was made or imported by this instance (for backends that
  // delegate host memory here, such as sim).
  bool owns(const memory_block_ptr& block) const noexcept;

 private:
  friend result<std::unique_ptr<host_backend>> create_host_backend(const host_config& config);
  host_backend(backend_caps caps, host_config config, std::shared_ptr<detail::host_state> state,
               std::unique_ptr<detail::copy_engine> engine, std::vector<int> numa_nodes);

  std::string_view do_name() const noexcept override { return "host"; }
  result<memory_block_ptr> do_allocate_device(int device, std::size_t bytes) override;
  result<memory_block_ptr> do_allocate_host(std::size_t bytes, bool pinned, int numa_node) override;
  result<fence_ptr> do_fill(const memory_span& dst, std::uint8_t value,
                            std::span<const fence_ptr> wait_for) override;
  result<fence_ptr> do_copy(const memory_span& dst, const memory_span& src,
                            std::span<const fence_ptr> wait_for) override;
  bool do_release_range(const memory_span& span) noexcept override;
  result<exported_memory> do_export_fd(const memory_span& span) override;
  result<memory_block_ptr> do_import_fd(const exported_memory& exported, int device) override;
  std::vector<int> do_host_numa_nodes() const override { return numa_nodes_; }

  const host_config config_;
  std::shared_ptr<detail::host_state> state_;
  std::unique_ptr<detail::copy_engine> engine_;
  const std::vector<int> numa_nodes_;
};

// Creates a host backend: loads the hwloc topology (for NUMA nodes) and starts
// the copy thread. Errors: io_error (hwloc could not load the topology, or the
// thread could not start). A pinned_limit_bytes of 0 is allowed: every pinned
// allocation then fails with quota_exceeded.
// Context: blocks while hwloc reads the machine (milliseconds); allocates.
result<std::unique_ptr<host_backend>> create_host_backend(const host_config& config = {});

}  // namespace xbuf
