// SPDX-License-Identifier: MIT
#include "allocator/host_heap.hpp"

#include <algorithm>
#include <bit>
#include <iterator>
#include <new>
#include <utility>

#include "allocator/block_heap.hpp"

namespace xbuf {

namespace {
constexpr std::uint64_t page = 4096;
constexpr std::uint64_t min_chunks = 8;  // chunking needs a domain of at least this many chunks
constexpr std::uint64_t pool_cap = 256ull << 20;  // pooled bytes, at most
constexpr std::size_t pool_max_blocks = 32;       // pooled blocks (an fd each), at most
}  // namespace

host_heap::host_heap(backend& be, bool pinned, std::uint64_t capacity, int numa_node)
    : heap(pinned ? placement::pinned() : placement::pageable(numa_node), capacity), backend_(be) {
  chunk_bytes_ = pinned ? (4ull << 20) : (16ull << 20);
  const memory_kind kind = pinned ? memory_kind::host_pinned : memory_kind::host_pageable;
  // A chunk is allocated (and, pinned, page-locked and charged to the
  // backend's cap) whole: only where it is a small part of the domain.
  if (detaches_ranges(be.caps(), kind) && capacity >= min_chunks * chunk_bytes_) small_max_ = chunk_bytes_ / 16;
  // Only where release_range knows every export (see the header).
  if (detaches_ranges(be.caps(), kind)) pool_limit_ = std::min(capacity / 8, pool_cap);
}

std::unique_ptr<host_heap> host_heap::create(backend& be, bool pinned, std::uint64_t capacity, int numa_node) {
  return std::unique_ptr<host_heap>(new host_heap(be, pinned, capacity, pinned ? -1 : numa_node));
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
  return allocate_own(size, alignment);
}

bool host_heap::backend_fills_host() noexcept {
  if (fills_host_) return *fills_host_;
  try {
    // A page nobody else uses, so the fill races with nothing; dropping it
    // is fine while the fill runs (the engine holds the block).
    auto probe = backend_.allocate_host(page, false);
    if (!probe) return false;  // not known yet: ask again next time
    auto f = backend_.fill(memory_span{*probe, 0, page}, 0);
    if (f || f.code() == errc::unsupported) fills_host_ = static_cast<bool>(f);
    return fills_host_.value_or(false);
  } catch (...) {
    return false;
  }
}

bool host_heap::pool_may_help(errc code) noexcept {
  return code == errc::out_of_memory || code == errc::quota_exceeded;
}

void host_heap::trim_pool(std::uint64_t keep) noexcept {
  while (pool_bytes_ > keep && !pool_.empty()) {
    pool_bytes_ -= pool_.front().bytes;
    pool_.pop_front();  // the backend unmaps it off this thread
  }
}

result<heap_allocation> host_heap::allocate_own(std::uint64_t size, std::uint64_t alignment) {
  const std::uint64_t bytes = own_block_bytes(backend_, where(), size, alignment);
  // Newest first: its pages are the likeliest still in cache. Page-aligned
  // requests only: the clear of a reused block starts at the span.
  for (auto it = pool_.rbegin(); alignment <= page && it != pool_.rend(); ++it) {
    if (it->bytes != bytes) continue;
    memory_block_ptr block = std::move(it->block);
    pool_bytes_ -= bytes;
    pool_.erase(std::next(it).base());
    auto a = own_block_allocation(std::move(block), size, alignment, bytes, backend_, where());
    a.needs_clear = true;  // it held another buffer
    return a;
  }
  auto a = allocate_own_block(backend_, where(), size, alignment, name());
  if (!a && pool_may_help(a.code()) && pool_bytes_ != 0) {
    trim_pool();
    a = allocate_own_block(backend_, where(), size, alignment, name());
  }
  return a;
}

result<heap_allocation> host_heap::allocate_small(std::uint64_t size, std::uint64_t alignment) {
  // Best fit among chunks: the fullest one that has a block big enough.
  // (alignment <= page here, and buddy blocks are aligned to their size.)
  const std::uint64_t carved = std::bit_ceil(std::max({size, page, alignment}));
  if (auto it = room_.lower_bound({carved, nullptr}); it != room_.end()) {
    return carve(chunks_.at(it->second), size, alignment);
  }
  auto block = backend_.allocate_host(chunk_bytes_, where().kind == memory_kind::host_pinned, where().node);
  if (!block && pool_may_help(block.code()) && pool_bytes_ != 0) {
    trim_pool();
    block = backend_.allocate_host(chunk_bytes_, where().kind == memory_kind::host_pinned, where().node);
  }
  if (!block) return block.err().prefixed(name() + " chunk");
  auto ranges = range_allocator::create(chunk_bytes_, page);
  if (!ranges) return ranges.err().prefixed(name() + " chunk");
  const memory_block* key = block->get();
  auto [it, inserted] = chunks_.emplace(
      key, chunk{std::move(*block), std::move(*ranges), 0, 0, std::vector<bool>(chunk_bytes_ / page, false)});
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
  a.shares_block = true;
  const auto first = c.dirty.begin() + static_cast<std::ptrdiff_t>(r->offset / page);
  const auto last = first + static_cast<std::ptrdiff_t>(r->block_size / page);
  a.needs_clear = std::find(first, last, true) != last;  // an earlier buffer's bytes may be there
  a.span = memory_span{c.block, static_cast<std::size_t>(r->offset), static_cast<std::size_t>(size)};
  return a;
}

void host_heap::do_free(heap_allocation& a) noexcept {
  auto it = a.range_used ? chunks_.find(a.span.block.get()) : chunks_.end();
  if (it == chunks_.end()) {  // a block of its own
    // Pooled only if the backend says nobody else can reach its pages.
    if (pool_limit_ != 0 && a.bytes <= pool_limit_ && backend_fills_host() && backend_.release_range(a.span)) {
      try {
        pool_.push_back({std::move(a.span.block), a.bytes});
        pool_bytes_ += a.bytes;
        while (pool_bytes_ > pool_limit_ || pool_.size() > pool_max_blocks) {
          pool_bytes_ -= pool_.front().bytes;
          pool_.pop_front();
        }
      } catch (...) {
        // No room to remember it: it is simply dropped.
      }
    }
    a.span.block.reset();
    return;
  }
  chunk& c = it->second;
  // The whole range, padding included, is marked: its next buffer is
  // cleared first. A range the backend could not take back stays out of
  // the buddy: better lost capacity than another tenant's bytes behind an
  // old fd.
  const memory_span whole{c.block, a.span.offset, static_cast<std::size_t>(a.bytes)};
  // Where the backend cannot clear host memory its release_range punches
  // the range (see the header): it reads as zero again, nothing to mark.
  if (backend_.release_range(whole)) {
    if (backend_fills_host()) {
      const auto first = c.dirty.begin() + static_cast<std::ptrdiff_t>(a.span.offset / page);
      std::fill(first, first + static_cast<std::ptrdiff_t>(a.bytes / page), true);
    }
    (void)c.ranges.free(*a.range_used);  // never a double free
  }
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
