// SPDX-License-Identifier: MIT
//
// host_heap.hpp - pinned or pageable system memory: small allocations carved
// from shared memfd chunks, large ones in blocks of their own.
//
// Overview
//   A memfd per allocation costs the daemon an fd and a mapping per buffer:
//   a tenant allocating 4 KiB buffers would run it out of fds (DESIGN.md,
//   "File descriptors are a budgeted resource"). So, where the backend can
//   give part of a block of this kind an fd of its own (detaches_ranges():
//   host and sim, both kinds; GPU runtimes, pageable only), allocations up
//   to small_max bytes at page alignment are cut by a buddy
//   range_allocator out of chunks - one allocate_host block each, created
//   when the others are full, released when empty (one empty chunk is kept
//   as a spare) - and cost no fd. Exporting one gives its range a memfd of
//   its own (backend export_fd), so an fd still reaches one buffer.
//   Larger allocations, and every allocation where the backend cannot
//   detach ranges (a GPU runtime's pinned block is registered with it as a
//   whole), get a block of their own (block_heap.hpp).
//
//   Counted against the capacity: a chunk range's block size (a power of
//   two, as the buddy reserves it), or an own block's page-rounded bytes.
//   A chunk itself is not counted; its untouched pages cost nothing.
//
//   Reuse without faults (ttm_pool's job). A move or a new buffer that gets
//   fresh memfd pages pays a minor fault per 4 KiB page, and dropping the
//   block pays munmap and the kernel freeing them: together most of a
//   1 MiB eviction. So freed memory keeps its pages, already faulted in:
//     - a freed chunk range keeps its pages (release_range restores an
//       exported range's own pages, gives nothing back to the kernel); the
//       chunk remembers which pages ever held a buffer (dirty), and a range
//       carved over any of them is handed out needs_clear;
//     - a freed own block goes to a pool, by its exact byte count, if the
//       backend says the block may hold another buffer (release_range true:
//       never when its own fd was exported - a receiver maps those very
//       pages - see memfd_block::exported_whole). A pooled block is handed
//       out needs_clear.
//   needs_clear means: the manager clears the whole allocation before a new
//   buffer sees it; a move into it overwrites the buffer's bytes and
//   move_job zeroes the padding an export could show (move_job.hpp).
//   The pool is bounded (pool_limit bytes: an eighth of the capacity, at
//   most 256 MiB; at most 32 blocks, each an fd) and given back whole when
//   the backend refuses an allocation (out of memory, the pinned cap): the
//   pool never makes an allocation fail. Pooled bytes are not counted in
//   used(): they are free for this heap, and the backend's pinned cap
//   counts pooled pinned blocks until they are trimmed.
//   Only kinds whose ranges the backend detaches are pooled: there
//   release_range knows about every export (memfd blocks); elsewhere (a GPU
//   runtime's pinned blocks) it cannot tell, and blocks are dropped.
//   And only where the backend can clear host memory (backend::fill on a
//   host block; probed once, on a page of its own): a GPU runtime's fill is
//   for device memory, and its release_range punches freed ranges, which
//   then read as zero and are handed out without needs_clear, as before.
//
//   Geometry: pageable chunks are 16 MiB with small_max 1 MiB; pinned
//   chunks 4 MiB with small_max 256 KiB, because a pinned chunk is
//   page-locked whole and charged whole to the backend's pinned cap.
//   A capacity below 8 chunks turns chunking off (a chunk could otherwise
//   take most of the pinned cap for one small buffer).
//
// Rules
//   - As heap.hpp: the manager's mutex guards it.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "allocator/heap.hpp"
#include "allocator/range_allocator.hpp"
#include "backends/backend.hpp"

namespace xbuf {

class host_heap final : public heap {
 public:
  // A host heap of `capacity` bytes: page-locked when `pinned`; pageable
  // memory bound to NUMA node `numa_node` when it is not -1 (where() says
  // placement::pageable(numa_node); pinned memory has no node). Never
  // fails (memory is asked for when needed; an unknown node fails then).
  static std::unique_ptr<host_heap> create(backend& be, bool pinned, std::uint64_t capacity,
                                           int numa_node = -1);

  // Chunks held now (each one block, one fd in the daemon); for stats and tests.
  std::size_t chunks() const noexcept { return chunks_.size(); }
  // The largest allocation carved from a chunk; 0 when chunking is off.
  std::uint64_t small_max() const noexcept { return small_max_; }
  // Own blocks kept for reuse, and their bytes; the bound on those bytes
  // (0: this heap pools nothing).
  std::size_t pooled_blocks() const noexcept { return pool_.size(); }
  std::uint64_t pooled_bytes() const noexcept { return pool_bytes_; }
  std::uint64_t pool_limit() const noexcept { return pool_limit_; }
  // Drops pooled blocks until at most `keep` bytes stay (memory pressure).
  // Never fails; the pages go back to the kernel off this thread.
  void trim_pool(std::uint64_t keep = 0) noexcept;

 private:
  host_heap(backend& be, bool pinned, std::uint64_t capacity, int numa_node);

  struct chunk {
    memory_block_ptr block;
    range_allocator ranges;
    std::size_t live = 0;       // ranges handed out
    std::uint64_t filed = 0;    // its key in room_: ranges.largest_free_block() when last filed
    std::vector<bool> dirty;    // per page: ever held a buffer (not zero)
  };
  struct pooled {
    memory_block_ptr block;
    std::uint64_t bytes = 0;  // the allocation's bytes (the key)
  };

  result<heap_allocation> allocate_small(std::uint64_t size, std::uint64_t alignment);
  result<heap_allocation> carve(chunk& c, std::uint64_t size, std::uint64_t alignment);
  // Files `c` in room_ under its largest free block now.
  void refile(chunk& c) noexcept;
  result<heap_allocation> allocate_own(std::uint64_t size, std::uint64_t alignment);
  // A backend refusal the pool may be the cause of (its pages, the pinned cap).
  static bool pool_may_help(errc code) noexcept;
  // Whether backend::fill clears host memory here (so reused memory can be
  // handed out needs_clear); asked once, on a page of its own.
  bool backend_fills_host() noexcept;

  result<heap_allocation> do_allocate(std::uint64_t size, std::uint64_t alignment) override;
  void do_free(heap_allocation& a) noexcept override;
  std::uint64_t do_largest_free_block() const noexcept override;
  double do_fragmentation() const noexcept override;

  backend& backend_;
  std::uint64_t chunk_bytes_ = 0;
  std::uint64_t small_max_ = 0;  // 0: every allocation gets a block of its own
  std::map<const memory_block*, chunk> chunks_;  // keyed by the chunk's block
  // Chunks with room, by their largest free block: the smallest that fits
  // is found in O(log chunks), not by trying each chunk in turn (at a
  // million live buffers the walk over ~600 chunks was most of an allocate).
  std::set<std::pair<std::uint64_t, const memory_block*>> room_;
  std::size_t empty_chunks_ = 0;  // chunks with no range handed out
  // Oldest first. pool_bytes_ == sum of bytes; pool_bytes_ <= pool_limit_.
  std::deque<pooled> pool_;
  std::uint64_t pool_bytes_ = 0;
  std::uint64_t pool_limit_ = 0;
  std::optional<bool> fills_host_;  // backend_fills_host(), once known
};

}  // namespace xbuf
