// SPDX-License-Identifier: MIT
//
// chunk_pool.hpp - small allocations from chunks of one allocator, off the
// socket (DESIGN.md "Cheap small allocations").
//
// Overview
//   A framework allocates and frees small tensors by the thousand; one
//   daemon round trip each would make xbuf the bottleneck. A chunk_pool sits
//   over an allocator the way frameworks' caching allocators sit over
//   cudaMalloc: it takes chunks (chunk_size bytes, no_evict, attached
//   pinned to `device` and mapped) and carves each into blocks of one size
//   class (powers of two from min_block to max_block). allocate() and
//   deallocate() of a small size touch only the pool's own lists; sizes
//   above max_block get a buffer of their own.
//
//   A chunk whose blocks are all free is idle; trim() gives idle chunks
//   back (all but keep_idle of them, once idle for idle_time), and
//   allocate() trims on its way. release_idle() gives every idle chunk
//   back at once. The daemon asks for that itself: with watch_pressure the
//   pool takes the allocator's memory-pressure callback, reads the
//   allocator's events at most every poll_interval from allocate,
//   deallocate and trim (a non-blocking read: a pool-only workload makes no other
//   call that would), and gives every idle chunk back after a
//   memory_pressure event. A chunk the allocator refuses for lack of room
//   is retried once after the pool's own idle chunks went back.
//
// Rules
//   - Thread-safe: one mutex over the lists; the allocator's calls (a new
//     chunk, a chunk going back) are made with it held, so two threads
//     never take a chunk for the same class at once.
//   - A chunk belongs to this pool's client; its blocks are never exported
//     or shared (an fd reaches one buffer: a buffer to share is allocated
//     on its own, not from a pool).
//   - Blocks are aligned to their size class (chunks are page-aligned).
//   - deallocate() of a pointer the pool did not hand out is not_found and
//     changes nothing; a double free is caught the same way (the block is
//     already free: bad_state).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "client/allocator.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf::client {

struct chunk_pool_options {
  std::vector<placement> placements;       // for chunks and large buffers
  int device = -1;                         // who uses the memory (-1: the CPU)
  std::uint64_t chunk_size = 2ull << 20;
  std::uint64_t min_block = 256;
  std::uint64_t max_block = 256ull << 10;  // larger: a buffer of its own
  std::size_t keep_idle = 1;               // idle chunks kept for reuse
  std::chrono::milliseconds idle_time{1000};
  bool watch_pressure = true;              // see Overview (replaces the allocator's pressure callback)
  std::chrono::milliseconds poll_interval{10};
};

struct chunk_pool_stats {
  std::size_t chunks = 0;        // held from the allocator
  std::size_t idle_chunks = 0;
  std::size_t large_buffers = 0;
  std::uint64_t bytes_in_use = 0;  // handed out, by block size
  std::uint64_t chunk_allocs = 0;  // allocator round trips for chunks so far
  std::uint64_t chunk_frees = 0;
  std::uint64_t pressure_releases = 0;  // memory_pressure events acted on
};

class chunk_pool {
 public:
  // Errors of the constructor: none (chunks are taken on demand).
  // Preconditions: placements not empty; min_block and max_block powers of
  // two, min_block <= max_block <= chunk_size.
  chunk_pool(allocator& a, chunk_pool_options o);
  chunk_pool(const chunk_pool&) = delete;
  chunk_pool& operator=(const chunk_pool&) = delete;
  ~chunk_pool();  // gives every chunk and large buffer back

  // Errors: invalid_argument (size 0), the allocator's (out_of_memory,
  // quota_exceeded, io_error, ...) when a chunk or large buffer is needed.
  result<void*> allocate(std::uint64_t size);
  // Errors: not_found (not from this pool), bad_state (already free).
  status deallocate(void* p);

  // Gives back idle chunks past keep_idle that have been idle for
  // idle_time; returns how many went.
  std::size_t trim();
  // Gives back every idle chunk now; returns how many went.
  std::size_t release_idle();

  chunk_pool_stats stats() const;

 private:
  struct chunk {
    buffer_id buffer = 0;
    attachment_id attachment = 0;
    std::uintptr_t base = 0;
    std::uint64_t size = 0;        // chunk bytes (large buffer: its bytes)
    std::uint64_t block = 0;       // block size; 0 = a large buffer
    std::vector<std::uint32_t> free_blocks;  // indices, a stack
    std::vector<bool> in_use;
    std::size_t used = 0;
    std::chrono::steady_clock::time_point idle_since;
  };

  // A new chunk (or large buffer) from the allocator, attached and mapped.
  result<std::unique_ptr<chunk>> take(std::uint64_t bytes, std::uint64_t block) XBUF_REQUIRES(mutex_);
  void give_back(chunk& c) XBUF_REQUIRES(mutex_);
  std::size_t trim_locked(bool everything) XBUF_REQUIRES(mutex_);
  // Reads the allocator's events when poll_interval has passed, and acts on
  // a memory_pressure among them.
  void watch_locked() XBUF_REQUIRES(mutex_);
  std::size_t class_of(std::uint64_t size) const noexcept;

  allocator& a_;
  const chunk_pool_options o_;
  mutable xbuf::mutex mutex_;
  // By base address: deallocate finds a pointer's chunk with upper_bound.
  std::map<std::uintptr_t, std::unique_ptr<chunk>> chunks_ XBUF_GUARDED_BY(mutex_);
  // Per size class: chunks with a free block (an index into nothing: base addresses).
  std::vector<std::vector<std::uintptr_t>> partial_ XBUF_GUARDED_BY(mutex_);
  chunk_pool_stats stats_ XBUF_GUARDED_BY(mutex_);
  // Set by the pressure callback (which may outlive the pool: shared).
  std::shared_ptr<std::atomic<bool>> pressed_ = std::make_shared<std::atomic<bool>>(false);
  std::chrono::steady_clock::time_point last_poll_ XBUF_GUARDED_BY(mutex_);
};

}  // namespace xbuf::client
