// SPDX-License-Identifier: MIT
//
// host_heap.hpp - pinned or pageable system memory, counted against a capacity.
//
// Overview
//   Each allocation is its own backend host block (memfd, so it can be
//   exported; NUMA-bound by the backend). The heap only keeps the byte count
//   against its capacity: the kernel does the carving. Alignments above a
//   page over-allocate by the alignment and offset into the block.
//
// Rules
//   - As heap.hpp: the manager's mutex guards it.
#pragma once

#include <cstdint>
#include <memory>

#include "allocator/heap.hpp"
#include "backends/backend.hpp"

namespace xbuf {

class host_heap final : public heap {
 public:
  // A host heap of `capacity` bytes: page-locked when `pinned`. Never fails
  // (memory is asked for per allocation).
  static std::unique_ptr<host_heap> create(backend& be, bool pinned, std::uint64_t capacity);

 private:
  host_heap(backend& be, bool pinned, std::uint64_t capacity);

  result<heap_allocation> do_allocate(std::uint64_t size, std::uint64_t alignment) override;
  void do_free(heap_allocation& a) noexcept override;
  std::uint64_t do_largest_free_block() const noexcept override;
  double do_fragmentation() const noexcept override;
  bool do_reuses_memory() const noexcept override { return false; }

  backend& backend_;
};

}  // namespace xbuf
