// SPDX-License-Identifier: MIT
//
// vram_heap.hpp - a GPU's VRAM as one arena, sub-allocated by a buddy.
//
// Overview
//   The heap takes one block of `capacity` bytes from the backend at
//   creation and hands out ranges of it (range_allocator: O(log n), blocks of
//   min_block << order). A range's bytes are its block size, so internal
//   fragmentation counts against capacity, as it does on the device.
//
// Rules
//   - As heap.hpp: the manager's mutex guards it.
//   - The arena lives as long as the heap and any span handed out of it
//     (memory_span holds the block).
//   - A freed range goes back to the buddy only once the backend took it
//     back (release_range): an exported range first gets the arena's own
//     pages again, so the fd's holders never see the next buffer's bytes.
#pragma once

#include <cstdint>
#include <memory>

#include "allocator/heap.hpp"
#include "allocator/range_allocator.hpp"
#include "backends/backend.hpp"

namespace xbuf {

class vram_heap final : public heap {
 public:
  // A VRAM heap of `capacity` bytes on `device`, in chunks of `min_block`.
  // Errors: those of range_allocator::create and backend::allocate_device,
  // prefixed with the heap's name.
  // Context: allocates the arena (may take long on a real device).
  static result<std::unique_ptr<vram_heap>> create(backend& be, int device, std::uint64_t capacity,
                                                   std::uint64_t min_block);


 private:
  vram_heap(backend& be, int device, std::uint64_t capacity, memory_block_ptr arena, range_allocator ranges);

  result<heap_allocation> do_allocate(std::uint64_t size, std::uint64_t alignment) override;
  void do_free(heap_allocation& a) noexcept override;
  std::uint64_t do_largest_free_block() const noexcept override;
  double do_fragmentation() const noexcept override;

  backend& backend_;
  memory_block_ptr arena_;
  range_allocator ranges_;
};

}  // namespace xbuf
