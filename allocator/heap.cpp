// SPDX-License-Identifier: MIT
#include "allocator/heap.hpp"

#include <algorithm>

#include "core/units.hpp"

namespace xbuf {

namespace {
constexpr std::uint64_t page = 4096;

bool all_signaled(const std::vector<fence_ptr>& fences) {
  return std::all_of(fences.begin(), fences.end(), [](const fence_ptr& f) { return f->is_signaled(); });
}
}  // namespace

heap::heap(backend& be, placement where, std::uint64_t capacity)
    : backend_(be), where_(where), name_(to_string(where)), capacity_(capacity) {}

result<std::unique_ptr<heap>> heap::create_vram(backend& be, int device, std::uint64_t capacity,
                                                std::uint64_t min_block) {
  auto ranges = range_allocator::create(capacity, min_block);
  if (!ranges) return ranges.err().prefixed("vram" + std::to_string(device) + " heap");
  auto arena = be.allocate_device(device, capacity);
  if (!arena) return arena.err().prefixed("vram" + std::to_string(device) + " arena");
  std::unique_ptr<heap> h(new heap(be, placement::vram(device), capacity));
  h->arena_ = std::move(*arena);
  h->ranges_.emplace(std::move(*ranges));
  return h;
}

std::unique_ptr<heap> heap::create_host(backend& be, bool pinned, std::uint64_t capacity) {
  return std::unique_ptr<heap>(
      new heap(be, pinned ? placement::pinned() : placement::pageable(), capacity));
}

result<heap_allocation> heap::allocate(std::uint64_t size, std::uint64_t alignment) {
  auto no_room = [&](std::uint64_t largest) {
    return fail(errc::out_of_memory,
                name_ + " is full: requested " + format_bytes(size) + ", " + format_bytes(used()) +
                    " of " + format_bytes(capacity_) + " used (" + format_bytes(delayed_bytes_) +
                    " waiting for fences), largest free block " + format_bytes(largest));
  };
  heap_allocation a;
  if (ranges_) {
    auto r = ranges_->allocate(size, alignment);
    if (!r) {
      if (r.code() == errc::out_of_memory) return no_room(ranges_->largest_free_block());
      return r.err().prefixed(name_);
    }
    a.vram_range = *r;
    a.bytes = r->block_size;
    a.span = memory_span{arena_, r->offset, size};
  } else {
    // Host memory is page-aligned; larger alignments over-allocate and offset.
    const std::uint64_t extra = alignment > page ? alignment : 0;
    const std::uint64_t bytes = size + extra;
    if (bytes > capacity_ - std::min(capacity_, used())) return no_room(capacity_ - std::min(capacity_, used()));
    auto block = backend_.allocate_host(bytes, where_.kind == memory_kind::host_pinned);
    if (!block) return block.err().prefixed(name_);
    std::uint64_t offset = 0;
    if (extra != 0) {
      const auto base = (*block)->device_ptr;
      offset = ((base + alignment - 1) & ~(alignment - 1)) - base;
    }
    a.bytes = bytes;
    a.span = memory_span{std::move(*block), offset, size};
  }
  live_bytes_ += a.bytes;
  return a;
}

void heap::free_now(heap_allocation& a) {
  if (a.vram_range) (void)ranges_->free(*a.vram_range);  // the manager never double-frees
  a.span.block.reset();
}

bool heap::release(heap_allocation a, std::vector<fence_ptr> fences) {
  live_bytes_ -= a.bytes;
  std::erase_if(fences, [](const fence_ptr& f) { return !f || f->is_signaled(); });
  if (fences.empty()) {
    free_now(a);
    return false;
  }
  delayed_bytes_ += a.bytes;
  zombies_.push_back({std::move(a), std::move(fences)});
  return true;
}

std::size_t heap::reap() {
  std::size_t freed = 0;
  std::erase_if(zombies_, [&](zombie& z) {
    if (!all_signaled(z.fences)) return false;
    delayed_bytes_ -= z.allocation.bytes;
    free_now(z.allocation);
    ++freed;
    return true;
  });
  return freed;
}

std::vector<fence_ptr> heap::pending_fences() const {
  std::vector<fence_ptr> out;
  for (const auto& z : zombies_) {
    for (const auto& f : z.fences) {
      if (!f->is_signaled()) out.push_back(f);
    }
  }
  return out;
}

domain_stats heap::stats() const {
  domain_stats s;
  s.name = name_;
  s.where = where_;
  s.capacity = capacity_;
  s.used = used();
  s.delayed_free_bytes = delayed_bytes_;
  s.buffers = lru_.size();
  s.delayed_frees = zombies_.size();
  if (ranges_) {
    const auto r = ranges_->stats();
    s.largest_free_block = r.largest_free_block;
    s.fragmentation = r.free_bytes == 0 ? 0.0
                          : 1.0 - static_cast<double>(r.largest_free_block) /
                                      static_cast<double>(r.free_bytes);
  } else {
    s.largest_free_block = capacity_ - std::min(capacity_, used());
  }
  return s;
}

}  // namespace xbuf
