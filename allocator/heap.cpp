// SPDX-License-Identifier: MIT
#include "allocator/heap.hpp"

#include <algorithm>

#include "core/units.hpp"

namespace xbuf {

namespace {

bool all_signaled(const std::vector<fence_ptr>& fences) {
  return std::all_of(fences.begin(), fences.end(), [](const fence_ptr& f) { return f->is_signaled(); });
}

}  // namespace

heap::heap(placement where, std::uint64_t capacity)
    : where_(where), name_(to_string(where)), capacity_(capacity) {}

error heap::no_room(std::uint64_t size, std::uint64_t largest) const {
  return fail(errc::out_of_memory,
              name_ + " is full: requested " + format_bytes(size) + ", " + format_bytes(used()) +
                  " of " + format_bytes(capacity_) + " used (" + format_bytes(delayed_bytes_) +
                  " waiting for fences), largest free block " + format_bytes(largest));
}

result<heap_allocation> heap::allocate(std::uint64_t size, std::uint64_t alignment) {
  auto a = do_allocate(size, alignment);
  if (a) {
    live_bytes_ += a->bytes;
    peak_used_ = std::max(peak_used_, used());
  }
  return a;
}

bool heap::release(heap_allocation a, std::vector<fence_ptr> fences) {
  live_bytes_ -= a.bytes;
  std::erase_if(fences, [](const fence_ptr& f) { return !f || f->is_signaled(); });
  if (fences.empty()) {
    do_free(a);
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
    do_free(z.allocation);
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
  s.peak_used = peak_used_;
  s.delayed_free_bytes = delayed_bytes_;
  s.buffers = lru_.size();
  s.delayed_frees = zombies_.size();
  s.largest_free_block = do_largest_free_block();
  s.fragmentation = do_fragmentation();
  return s;
}

}  // namespace xbuf
