// SPDX-License-Identifier: MIT
//
// heap.hpp - the memory of one domain: capacity, allocations, LRU, delayed free.
//
// Overview
//   A heap is one domain's memory, as TTM's resource managers are: the
//   interface below holds what every domain shares (capacity accounting,
//   delayed free, the LRU container, stats) and two kinds supply where the
//   bytes come from:
//     - vram_heap (vram_heap.hpp) sub-allocates one arena block from the
//       backend with a buddy range_allocator, so allocation is O(log n) and
//       fragmentation is known (TTM's range manager);
//     - block_heap (block_heap.hpp) asks the backend for one block per
//       allocation - the driver or kernel does the carving - and only counts
//       bytes against its capacity (TTM's sys manager); a block is one
//       buffer's, so its export reaches that buffer only;
//     - host_heap (host_heap.hpp) carves small allocations out of shared
//       memfd chunks (so they cost no fd each) and gives large ones a block
//       of their own.
//
//   Delayed free: release() does not free at once. The allocation becomes a
//   *zombie* held together with the fences that may still touch it (a copy
//   reading it, a job still using it); reap() frees zombies whose fences have
//   all signaled. Zombie bytes count as used until then:
//       used() == live_bytes + delayed_bytes()      used() <= capacity()
//
// Rules
//   - Not locked: the memory manager's mutex guards every heap. No function
//     here waits on a fence (reap only tests), so holding that mutex across
//     these calls is fine.
//   - The LRU list is the manager's: it stores buffers least recently used
//     first; the heap only owns the container. Eviction does not walk it in
//     this order: allocator/eviction_policy.hpp orders it by each buffer's
//     predicted next use, and the list's order only breaks ties (so buffers
//     without a periodic history still go in LRU order).
//   - Non-virtual public functions over private do_* virtuals (as
//     backends/backend.hpp): the accounting above is written once.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "allocator/domain.hpp"
#include "allocator/range_allocator.hpp"
#include "backends/backend.hpp"
#include "core/fence.hpp"
#include "core/result.hpp"

namespace xbuf {

struct buffer;  // allocator/buffer.hpp

// The memory one buffer occupies in a heap.
struct heap_allocation {
  memory_span span;                 // what copies, maps and exports use
  std::optional<range> range_used;  // a range of a shared block (vram_heap, host_heap's chunks)
  std::uint64_t bytes = 0;          // what counts against capacity
  // The memory may hold an earlier buffer's bytes (a reused range, device
  // pages a driver hands out again): cleared before a new owner sees it.
  bool needs_clear = false;
  // span.block holds other buffers too: exporting it needs a backend that
  // gives the range pages of its own (detaches_ranges(caps, kind)).
  bool shares_block = false;
};

struct domain_stats {
  std::string name;                    // "vram0", "pinned", "pageable"
  placement where;
  std::uint64_t capacity = 0;
  std::uint64_t used = 0;              // live + delayed-free bytes
  std::uint64_t peak_used = 0;         // the most `used` has been since the heap was made
  std::uint64_t delayed_free_bytes = 0;
  std::uint64_t largest_free_block = 0;  // VRAM: buddy; host: capacity - used
  double fragmentation = 0;            // VRAM: 1 - largest_free/free; host: 0
  std::size_t buffers = 0;             // buffers placed here (LRU length)
  std::size_t delayed_frees = 0;       // zombies waiting for fences
  std::uint64_t exported_bytes = 0;    // buffers here with an unreleased export (the manager's count)
};

class heap {
 public:
  virtual ~heap() = default;
  heap(const heap&) = delete;
  heap& operator=(const heap&) = delete;

  const placement& where() const noexcept { return where_; }
  const std::string& name() const noexcept { return name_; }
  std::uint64_t capacity() const noexcept { return capacity_; }
  std::uint64_t used() const noexcept { return live_bytes_ + delayed_bytes_; }
  std::uint64_t delayed_bytes() const noexcept { return delayed_bytes_; }
  // Bytes neither live nor waiting for fences.
  std::uint64_t free_bytes() const noexcept { return capacity_ - std::min(capacity_, used()); }

  // Takes `size` bytes aligned to `alignment` (0 = page) without evicting.
  // Errors: out_of_memory (message names the heap, the request, used and
  // free bytes, the largest free block), and the backend's errors.
  // Context: may allocate and call the backend (mmap); never waits on a fence.
  result<heap_allocation> allocate(std::uint64_t size, std::uint64_t alignment);

  // Gives `a` back once every fence in `fences` has signaled (at once if all
  // have). Never fails. Returns true if it had to be delayed.
  bool release(heap_allocation a, std::vector<fence_ptr> fences);

  // Frees every zombie whose fences have all signaled. Returns how many.
  std::size_t reap();

  // Unsignaled fences that hold zombies back: wait for these to get memory.
  std::vector<fence_ptr> pending_fences() const;

  domain_stats stats() const;

  // Buffers placed here, least recently used first (manager-owned content).
  std::list<buffer*>& lru() noexcept { return lru_; }
  const std::list<buffer*>& lru() const noexcept { return lru_; }

 protected:
  heap(placement where, std::uint64_t capacity);

  // An out_of_memory error naming this heap, the request and `largest`.
  error no_room(std::uint64_t size, std::uint64_t largest) const;

 private:
  // do_allocate: bytes for `size` at `alignment`, without touching the
  // accounting (allocate() adds a.bytes to live bytes). Mandatory.
  virtual result<heap_allocation> do_allocate(std::uint64_t size, std::uint64_t alignment) = 0;
  // do_free: returns `a`'s memory now (its fences have signaled). Mandatory;
  // never fails.
  virtual void do_free(heap_allocation& a) noexcept = 0;
  // do_largest_free_block / do_fragmentation: for stats and error messages.
  virtual std::uint64_t do_largest_free_block() const noexcept = 0;
  virtual double do_fragmentation() const noexcept = 0;

  struct zombie {
    heap_allocation allocation;
    std::vector<fence_ptr> fences;
  };

  const placement where_;
  const std::string name_;
  const std::uint64_t capacity_;
  std::uint64_t live_bytes_ = 0;
  std::uint64_t delayed_bytes_ = 0;
  std::uint64_t peak_used_ = 0;  // high-water mark of used(): only allocate() raises used()
  std::vector<zombie> zombies_;
  std::list<buffer*> lru_;
};

}  // namespace xbuf
