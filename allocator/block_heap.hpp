// SPDX-License-Identifier: MIT
//
// block_heap.hpp - a domain whose every allocation is a backend block of its own.
//
// Overview
//   Each allocation asks the backend for one block - allocate_device for a
//   GPU's VRAM, allocate_host for system memory - and the heap only counts
//   its bytes against the capacity: the driver or the kernel does the
//   carving. A block is one buffer's, so its export reaches that buffer and
//   nothing else (DESIGN.md, "An fd reaches one buffer"). The memory manager
//   uses it for VRAM where the backend exports device memory per allocation
//   but cannot give part of an arena an fd of its own (CUDA: cuMemCreate
//   with a POSIX-fd handle, one per buffer); host_heap uses
//   allocate_own_block for its large allocations.
//
//   Bytes counted are the block's: the size plus any alignment padding,
//   rounded up to the backend's granularity for device memory (2 MiB on
//   CUDA), as the device itself counts them.
//
//   Device blocks are marked needs_clear: a driver hands the pages this
//   process freed to its next allocation, so an earlier tenant's bytes may
//   be there. Host blocks are fresh memfd pages, zero from the kernel
//   (host_heap's pool hands out used ones, marked needs_clear itself).
//
// Rules
//   - As heap.hpp: the manager's mutex guards it.
//   - Every allocation is one backend call (cuMemCreate + map on CUDA, tens
//     of microseconds): the client library's chunk pool keeps small
//     allocations away from it.
#pragma once

#include <cstdint>
#include <memory>

#include "allocator/heap.hpp"
#include "backends/backend.hpp"

namespace xbuf {

// The bytes a block of its own for `size` at `alignment` takes in `where`
// (what allocate_own_block counts); UINT64_MAX when no address space holds it.
std::uint64_t own_block_bytes(const backend& be, const placement& where, std::uint64_t size,
                              std::uint64_t alignment) noexcept;

// A block of its own for `size` bytes at `alignment` (0 = page) in `where`
// (vram(d), pinned or pageable). Alignments above the backend's granule
// over-allocate by the alignment and offset into the block.
// Errors: the backend's (out_of_memory naming the device, quota_exceeded for
// the pinned cap), prefixed with `who`.
// Context: one backend allocation; may block in the kernel or driver.
result<heap_allocation> allocate_own_block(backend& be, const placement& where, std::uint64_t size,
                                           std::uint64_t alignment, const std::string& who);

// The allocation `allocate_own_block` makes of `block` (a block of
// own_block_bytes(size, alignment) bytes in `where`): the span at the
// alignment's offset in it. needs_clear is left false.
heap_allocation own_block_allocation(memory_block_ptr block, std::uint64_t size, std::uint64_t alignment,
                                     std::uint64_t bytes, const backend& be, const placement& where);

class block_heap final : public heap {
 public:
  // A heap of `capacity` bytes in `where` whose allocations are blocks of
  // their own. Never fails: memory is asked for per allocation.
  static std::unique_ptr<block_heap> create(backend& be, const placement& where, std::uint64_t capacity);

 private:
  block_heap(backend& be, const placement& where, std::uint64_t capacity);

  result<heap_allocation> do_allocate(std::uint64_t size, std::uint64_t alignment) override;
  void do_free(heap_allocation& a) noexcept override;
  std::uint64_t do_largest_free_block() const noexcept override;
  double do_fragmentation() const noexcept override;

  backend& backend_;
};

}  // namespace xbuf
