// SPDX-License-Identifier: MIT
#include "allocator/host_heap.hpp"

#include <utility>

namespace xbuf {

namespace {
constexpr std::uint64_t page = 4096;
}  // namespace

host_heap::host_heap(backend& be, bool pinned, std::uint64_t capacity)
    : heap(pinned ? placement::pinned() : placement::pageable(), capacity), backend_(be) {}

std::unique_ptr<host_heap> host_heap::create(backend& be, bool pinned, std::uint64_t capacity) {
  return std::unique_ptr<host_heap>(new host_heap(be, pinned, capacity));
}

result<heap_allocation> host_heap::do_allocate(std::uint64_t size, std::uint64_t alignment) {
  // Host memory is page-aligned; larger alignments over-allocate and offset.
  const std::uint64_t extra = alignment > page ? alignment : 0;
  const std::uint64_t bytes = size + extra;
  if (bytes > free_bytes()) return no_room(size, free_bytes());
  auto block = backend_.allocate_host(bytes, where().kind == memory_kind::host_pinned);
  if (!block) return block.err().prefixed(name());
  std::uint64_t offset = 0;
  if (extra != 0) {
    const auto base = (*block)->device_ptr;
    offset = ((base + alignment - 1) & ~(alignment - 1)) - base;
  }
  heap_allocation a;
  a.bytes = bytes;
  a.span = memory_span{std::move(*block), offset, size};
  return a;
}

void host_heap::do_free(heap_allocation& a) noexcept { a.span.block.reset(); }

std::uint64_t host_heap::do_largest_free_block() const noexcept { return free_bytes(); }

double host_heap::do_fragmentation() const noexcept { return 0.0; }

}  // namespace xbuf
