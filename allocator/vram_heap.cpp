// SPDX-License-Identifier: MIT
#include "allocator/vram_heap.hpp"

#include <utility>

namespace xbuf {

vram_heap::vram_heap(backend& be, int device, std::uint64_t capacity, memory_block_ptr arena,
                     range_allocator ranges)
    : heap(placement::vram(device), capacity), backend_(be), arena_(std::move(arena)),
      ranges_(std::move(ranges)) {}

result<std::unique_ptr<vram_heap>> vram_heap::create(backend& be, int device, std::uint64_t capacity,
                                                     std::uint64_t min_block) {
  const std::string name = to_string(placement::vram(device));
  auto ranges = range_allocator::create(capacity, min_block);
  if (!ranges) return ranges.err().prefixed(name + " heap");
  auto arena = be.allocate_device(device, capacity);
  if (!arena) return arena.err().prefixed(name + " arena");
  return std::unique_ptr<vram_heap>(
      new vram_heap(be, device, capacity, std::move(*arena), std::move(*ranges)));
}

result<heap_allocation> vram_heap::do_allocate(std::uint64_t size, std::uint64_t alignment) {
  auto r = ranges_.allocate(size, alignment);
  if (!r) {
    if (r.code() == errc::out_of_memory) return no_room(size, ranges_.largest_free_block());
    return r.err().prefixed(name());
  }
  heap_allocation a;
  a.range_used = *r;
  a.bytes = r->block_size;
  a.needs_clear = true;  // the range held other buffers before
  a.shares_block = true;
  a.span = memory_span{arena_, r->offset, size};
  return a;
}

void vram_heap::do_free(heap_allocation& a) noexcept {
  // A range the backend could not take back stays out of the buddy: better
  // lost capacity than another tenant's bytes behind an old fd.
  const bool reusable = backend_.release_range(a.span);
  if (a.range_used && reusable) (void)ranges_.free(*a.range_used);  // the manager never double-frees
  a.span.block.reset();
}

std::uint64_t vram_heap::do_largest_free_block() const noexcept {
  return ranges_.largest_free_block();
}

double vram_heap::do_fragmentation() const noexcept {
  const auto r = ranges_.stats();
  if (r.free_bytes == 0) return 0.0;
  return 1.0 - static_cast<double>(r.largest_free_block) / static_cast<double>(r.free_bytes);
}

}  // namespace xbuf
