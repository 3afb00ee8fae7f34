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
//   A chunk itself is not counted; its untouched pages cost nothing, and a
//   freed range's pages go back to the kernel (release_range punches them),
//   so memory handed out again reads as zero: no clear is needed.
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
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "allocator/heap.hpp"
#include "allocator/range_allocator.hpp"
#include "backends/backend.hpp"

namespace xbuf {

class host_heap final : public heap {
 public:
  // A host heap of `capacity` bytes: page-locked when `pinned`. Never fails
  // (memory is asked for when needed).
  static std::unique_ptr<host_heap> create(backend& be, bool pinned, std::uint64_t capacity);

  // Chunks held now (each one block, one fd in the daemon); for stats and tests.
  std::size_t chunks() const noexcept { return chunks_.size(); }
  // The largest allocation carved from a chunk; 0 when chunking is off.
  std::uint64_t small_max() const noexcept { return small_max_; }

 private:
  host_heap(backend& be, bool pinned, std::uint64_t capacity);

  struct chunk {
    memory_block_ptr block;
    range_allocator ranges;
    std::size_t live = 0;    // ranges handed out
    std::uint64_t filed = 0;  // its key in room_: ranges.largest_free_block() when last filed
  };

  result<heap_allocation> allocate_small(std::uint64_t size, std::uint64_t alignment);
  result<heap_allocation> carve(chunk& c, std::uint64_t size, std::uint64_t alignment);
  // Files `c` in room_ under its largest free block now.
  void refile(chunk& c) noexcept;

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
};

}  // namespace xbuf
