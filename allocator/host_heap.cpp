// SPDX-License-Identifier: MIT
#include "allocator/host_heap.hpp"

#include <algorithm>
#include <bit>
#include <new>
#include <utility>

#include "allocator/block_heap.hpp"

namespace xbuf {

namespace {
constexpr std::uint64_t page = 4096;
constexpr std::uint64_t min_chunks = 8;  // chunking needs a domain of at least this many chunks
}  // namespace

host_heap::host_heap(backend& be, bool pinned, std::uint64_t capacity)
    : heap(pinned ? placement::pinned() : placement::pageable(), capacity), backend_(be) {
  chunk_bytes_ = pinned ? (4ull << 20) : (16ull << 20);
  const memory_kind kind = pinned ? memory_kind::host_pinned : memory_kind::host_pageable;
  // A chunk is allocated (and, pinned, page-locked and charged to the
  // backend's cap) whole: only where it is a small part of the domain.
  if (detaches_ranges(be.caps(), kind) && capacity >= min_chunks * chunk_bytes_) small_max_ = chunk_bytes_ / 16;
}

std::unique_ptr<host_heap> host_heap::create(backend& be, bool pinned, std::uint64_t capacity) {
  return std::unique_ptr<host_heap>(new host_heap(be, pinned, capacity));
}

result<heap_allocation> host_heap::do_allocate(std::uint64_t size, std::uint64_t alignment) {
  const std::uint64_t carved = std::bit_ceil(std::max({size, page, alignment}));
  // Chunk ranges are aligned within the chunk, whose mapping is only
  // page-aligned: larger alignments get a block of their own.
  if (small_max_ != 0 && carved <= small_max_ && alignment <= page) {
    if (carved > free_bytes()) return no_room(size, free_bytes());
    return allocate_small(size, alignment);
  }
  if (own_block_bytes(backend_, where(), size, alignment) > free_bytes()) return no_room(size, free_bytes());
  return allocate_own_block(backend_, where(), size, alignment, name());
}

result<heap_allocation> host_heap::allocate_small(std::uint64_t size, std::uint64_t alignment) {
  // Best fit among chunks: the fullest one that has a block big enough.
  // (alignment <= page here, and buddy blocks are aligned to their size.)
  const std::uint64_t carved = std::bit_ceil(std::max({size, page, alignment}));
  if (auto it = room_.lower_bound({carved, nullptr}); it != room_.end()) {
    return carve(chunks_.at(it->second), size, alignment);
  }
  auto block = backend_.allocate_host(chunk_bytes_, where().kind == memory_kind::host_pinned);
  if (!block) return block.err().prefixed(name() + " chunk");
  auto ranges = range_allocator::create(chunk_bytes_, page);
  if (!ranges) return ranges.err().prefixed(name() + " chunk");
  const memory_block* key = block->get();
  auto [it, inserted] = chunks_.emplace(key, chunk{std::move(*block), std::move(*ranges), 0, 0});
  ++empty_chunks_;
  return carve(it->second, size, alignment);
}

result<heap_allocation> host_heap::carve(chunk& c, std::uint64_t size, std::uint64_t alignment) {
  auto r = c.ranges.allocate(size, alignment);
  if (!r) return r.err();
  if (c.live++ == 0) --empty_chunks_;
  refile(c);
  heap_allocation a;
  a.range_used = *r;
  a.bytes = r->block_size;
  a.shares_block = true;  // freed ranges were punched: they read as zero, no clear
  a.span = memory_span{c.block, static_cast<std::size_t>(r->offset), static_cast<std::size_t>(size)};
  return a;
}

void host_heap::do_free(heap_allocation& a) noexcept {
  auto it = a.range_used ? chunks_.find(a.span.block.get()) : chunks_.end();
  if (it == chunks_.end()) {  // a block of its own
    a.span.block.reset();
    return;
  }
  chunk& c = it->second;
  // The whole range, padding included, goes back to the kernel. A range the
  // backend could not take back stays out of the buddy: better lost
  // capacity than another tenant's bytes behind an old fd.
  const memory_span whole{c.block, a.span.offset, static_cast<std::size_t>(a.bytes)};
  if (backend_.release_range(whole)) (void)c.ranges.free(*a.range_used);  // never a double free
  a.span.block.reset();
  refile(c);
  if (--c.live != 0) return;
  // Keep one empty chunk as a spare, so a buffer freed and allocated again
  // does not create and drop a chunk each time.
  if (++empty_chunks_ > 1) {
    room_.erase({c.filed, it->first});
    chunks_.erase(it);
    --empty_chunks_;
  }
}

void host_heap::refile(chunk& c) noexcept {
  const memory_block* key = c.block.get();
  if (c.filed != 0) room_.erase({c.filed, key});
  c.filed = c.ranges.largest_free_block();
  // Only a std::bad_alloc of the set's node could fail here: a chunk not
  // filed is never picked again, which costs a chunk, never correctness.
  if (c.filed != 0) {
    try {
      room_.insert({c.filed, key});
    } catch (const std::bad_alloc&) {
      c.filed = 0;
    }
  }
}

std::uint64_t host_heap::do_largest_free_block() const noexcept { return free_bytes(); }

double host_heap::do_fragmentation() const noexcept { return 0.0; }

}  // namespace xbuf
