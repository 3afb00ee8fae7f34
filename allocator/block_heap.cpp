// SPDX-License-Identifier: MIT
#include "allocator/block_heap.hpp"

#include <algorithm>
#include <limits>
#include <utility>

namespace xbuf {

namespace {
std::uint64_t granule_of(const backend& be, const placement& where) noexcept {
  if (where.kind != memory_kind::device) return 4096;
  return std::max<std::uint64_t>(be.caps().device_granularity, 4096);
}
// Blocks start granule-aligned; a larger alignment over-allocates and offsets.
std::uint64_t padding_for(std::uint64_t granule, std::uint64_t alignment) noexcept {
  return alignment > granule ? alignment : 0;
}
}  // namespace

std::uint64_t own_block_bytes(const backend& be, const placement& where, std::uint64_t size,
                              std::uint64_t alignment) noexcept {
  const std::uint64_t granule = granule_of(be, where);
  const std::uint64_t extra = padding_for(granule, alignment);
  if (size > std::numeric_limits<std::uint64_t>::max() - extra - granule) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  return (size + extra + granule - 1) / granule * granule;
}

result<heap_allocation> allocate_own_block(backend& be, const placement& where, std::uint64_t size,
                                           std::uint64_t alignment, const std::string& who) {
  const bool device = where.kind == memory_kind::device;
  const std::uint64_t bytes = own_block_bytes(be, where, size, alignment);
  if (bytes == std::numeric_limits<std::uint64_t>::max()) {
    return fail(errc::out_of_memory, who + ": " + std::to_string(size) + " bytes is beyond any address space");
  }
  auto block = device ? be.allocate_device(where.device, bytes)
                      : be.allocate_host(bytes, where.kind == memory_kind::host_pinned, where.node);
  if (!block) return block.err().prefixed(who);
  auto a = own_block_allocation(std::move(*block), size, alignment, bytes, be, where);
  a.needs_clear = device;
  return a;
}

heap_allocation own_block_allocation(memory_block_ptr block, std::uint64_t size, std::uint64_t alignment,
                                     std::uint64_t bytes, const backend& be, const placement& where) {
  std::uint64_t offset = 0;
  if (padding_for(granule_of(be, where), alignment) != 0) {
    // The address devices use (a registered pinned block's too); the CPU's
    // where no device address is known.
    const auto base = block->device_ptr != 0 ? block->device_ptr : reinterpret_cast<std::uint64_t>(block->host_ptr);
    offset = ((base + alignment - 1) & ~(alignment - 1)) - base;
  }
  heap_allocation a;
  a.bytes = bytes;
  a.span = memory_span{std::move(block), static_cast<std::size_t>(offset), static_cast<std::size_t>(size)};
  return a;
}

block_heap::block_heap(backend& be, const placement& where, std::uint64_t capacity)
    : heap(where, capacity), backend_(be) {}

std::unique_ptr<block_heap> block_heap::create(backend& be, const placement& where, std::uint64_t capacity) {
  return std::unique_ptr<block_heap>(new block_heap(be, where, capacity));
}

result<heap_allocation> block_heap::do_allocate(std::uint64_t size, std::uint64_t alignment) {
  if (own_block_bytes(backend_, where(), size, alignment) > free_bytes()) return no_room(size, free_bytes());
  return allocate_own_block(backend_, where(), size, alignment, name());
}

void block_heap::do_free(heap_allocation& a) noexcept { a.span.block.reset(); }

std::uint64_t block_heap::do_largest_free_block() const noexcept { return free_bytes(); }

double block_heap::do_fragmentation() const noexcept { return 0.0; }

}  // namespace xbuf
