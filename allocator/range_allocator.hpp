// SPDX-License-Identifier: MIT
//
// range_allocator.hpp - buddy allocator over an address range [0, size)
// (drm_buddy analog), used by the memory manager to sub-allocate one device's
// VRAM arena.
//
// Overview
//   The range is cut into power-of-two *blocks*. The smallest block is the
//   *chunk* (min_block, a power of two >= 4096); a block of order k is
//   min_block << k bytes and starts at a multiple of its own size. A size that
//   is not a power of two is covered by several top-level *roots*, one per set
//   bit of size / min_block, largest first, so that every root (and therefore
//   every block) is naturally aligned: a root's offset is a sum of larger powers
//   of two, hence a multiple of its own size.
//
//   allocate(n) takes the smallest free block of order >= the order of
//   bit_ceil(max(n, min_block, alignment)) and splits it in halves down to that
//   order; each split leaves the upper half (the buddy) free. free() marks the
//   block free again and merges it with its buddy for as long as the buddy is
//   free too, so free blocks are always the maximal aligned blocks that hold no
//   allocation.
//
//   Data structures (why these):
//   - A binary tree of block nodes kept in a pool (std::vector, index links,
//     unused child pairs chained in an intrusive free list). A node's buddy is
//     its sibling, found in O(1) - no lookup by address while merging.
//   - One intrusive doubly-linked free list per order: O(1) push and O(1)
//     removal of a given block (the buddy being merged). A std::set per order
//     keyed by offset would give lowest-address-first placement but costs
//     O(log n) per buddy lookup, O(log^2 n) per merge chain, and a heap
//     allocation per insert.
//   - A 64-bit mask of the orders whose free list is non-empty: the smallest
//     order >= k with a free block, and the largest free block, are one
//     count-zero instruction each. No scan over blocks or orders.
//   - The range handle carries its leaf's node index (range::node, as
//     drm_buddy hands back its block), so free() finds the block in O(1) and
//     checks it against the handle: allocated, same offset, id, size and
//     block size. Until issue 11 free() descended the tree from the root for
//     every call: D dependent loads, each a cache miss once the tree
//     outgrows the cache; at 1M live allocations that walk was 87% of
//     free()'s time. A hash map from offset to node would also be O(1), but
//     costs memory and a heap allocation per insert; the index costs the
//     handle 8 bytes. The descent remains on the error path only, where it
//     says exactly where a bad offset lands (inside a free block: double
//     free; inside another allocation: not a start offset), so refused frees
//     report what they reported before. bench/range_growth_bench measures
//     the growth from 1k to 1M live.
//   - Child pairs start at even indices (the root run is padded to an even
//     length), so a node's buddy is i ^ 1: free() checks it without loading
//     the parent, which it touches only to merge.
//
//   Complexity, with n = size / min_block and D = log2(n) (the tree depth):
//     create            O(number of roots) <= O(D)
//     allocate          O(D): at most D splits; node pool growth is amortized
//     free              O(1) to find and check the block, plus one merge per
//                       level whose buddy is free (at most D); a refused free
//                       is O(D), the diagnosing descent
//     stats, accessors  O(1) (stats copies one counter per order)
//     validate          O(nodes) - a test and debugging aid, not for hot paths
//
//   Fragmentation (reported by stats()):
//     internal: a request of s bytes occupies block_size = bit_ceil(max(s,
//       min_block, alignment)) bytes; up to block_size - s bytes (just under
//       half the block for s = 2^k + 1) are unusable by anyone.
//         internal_fragmentation_bytes = used_block_bytes - used_requested_bytes
//         internal_fragmentation = internal_fragmentation_bytes / used_block_bytes
//                                  (0 when nothing is allocated)
//     external: free memory split into blocks too small for a large request.
//         external_fragmentation = 1 - largest_free_block / free_bytes
//                                  (0 when free_bytes == 0; 0 means all free
//                                  memory is one block)
//
//   Invariants (checked by validate()):
//     used_block_bytes + free_bytes == size
//     free_bytes == sum over k of free_blocks[k] * (min_block << k)
//     used_requested_bytes <= used_block_bytes
//     allocation_count == number of allocated blocks
//     no two free blocks are buddies (they would have merged)
//     buddy(i) == i ^ 1 for every non-root node (pairs start at even indices)
//
// Rules
//   - Not internally locked. The memory manager's heap mutex protects every
//     call, including the const ones; lock order as in the project:
//     reservation locks -> manager/heap mutex -> fence lock. Nothing here takes
//     a lock, blocks, or calls back into the caller.
//   - Never throws: host memory exhaustion while growing the node pool is
//     reported as errc::out_of_memory before any state changes ("reserve, then
//     split"). Merging on free never allocates.
//   - free() of a range this allocator did not hand out, or handed out and
//     already took back, is a caller bug. It is reported as a value (see
//     free()) and changes nothing; a valid free cannot fail. This deviates from
//     "freeing never fails" on purpose: the allocator is fed by the memory
//     manager, and a double free there must be diagnosable, not silent
//     corruption of the free lists.
//   - Offsets are relative to the arena; the caller adds the arena's base.
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace xbuf {

// One allocation handed out by range_allocator. Treat as an opaque token that
// free() takes back unchanged; the fields are for the caller's use, except
// node, which is the allocator's own.
struct range {
  std::uint64_t offset = 0;      // start; a multiple of block_size
  std::uint64_t size = 0;        // bytes requested
  std::uint64_t block_size = 0;  // bytes reserved: a power of two >= size
  std::uint64_t id = 0;          // unique per allocation in this allocator's
                                 // life; tells a stale range from a new
                                 // allocation at the same offset
  // The allocator's own: the index of the block's node, so free() finds it in
  // O(1); checked against the fields above, never trusted. max: none.
  std::uint64_t node = std::numeric_limits<std::uint64_t>::max();

  std::uint64_t end() const noexcept { return offset + size; }
  friend bool operator==(const range&, const range&) = default;
};

// Orders are 0 .. max_orders - 1; size / min_block < 2^64 / 2^12 bounds the
// order below 52, and the free-order mask is one 64-bit word.
inline constexpr unsigned range_allocator_max_orders = 64;

struct range_allocator_stats {
  std::uint64_t size = 0;                  // bytes managed
  std::uint64_t min_block = 0;             // chunk size
  std::uint64_t free_bytes = 0;            // sum of free block sizes
  std::uint64_t used_block_bytes = 0;      // sum of allocated block sizes
  std::uint64_t used_requested_bytes = 0;  // sum of requested sizes
  std::uint64_t internal_fragmentation_bytes = 0;  // used_block - used_requested
  std::uint64_t largest_free_block = 0;    // 0 when full
  std::uint64_t allocation_count = 0;      // live allocations
  unsigned max_order = 0;                  // order of the largest root
  // free_blocks[k]: free blocks of min_block << k bytes; zero above max_order.
  std::array<std::uint64_t, range_allocator_max_orders> free_blocks{};
  double internal_fragmentation = 0.0;  // see the equations above
  double external_fragmentation = 0.0;
};

class range_allocator {
 public:
  // Builds an allocator whose whole range [0, size) is free.
  // Errors: invalid_argument when min_block is not a power of two or is below
  //   4096, when size is 0 or below min_block, or when size is not a multiple
  //   of min_block (the caller rounds the arena down: silently dropping a tail
  //   would hide a mistake); out_of_memory when host memory for the roots
  //   cannot be had. The message names the bad value.
  // Context: allocates (the node pool); does not block.
  // Ownership: the returned allocator owns its bookkeeping; it owns no device
  //   memory - offsets are only numbers.
  static result<range_allocator> create(std::uint64_t size, std::uint64_t min_block);

  range_allocator(range_allocator&&) noexcept = default;
  range_allocator& operator=(range_allocator&&) noexcept = default;
  range_allocator(const range_allocator&) = delete;
  range_allocator& operator=(const range_allocator&) = delete;
  ~range_allocator() = default;

  // Reserves a block of bit_ceil(max(size, min_block, alignment)) bytes,
  // aligned to its own size and so to `alignment`. alignment 0 means "no
  // requirement beyond the block's natural alignment"; an alignment above the
  // block size rounds the block up to the alignment (the excess is internal
  // fragmentation).
  // Errors: invalid_argument when size is 0, larger than the whole range, or
  //   rounds up to a block bigger than the largest root (could never succeed),
  //   or when alignment is not 0 or a power of two; out_of_memory when no free
  //   block is large enough now - the message names the request, the free bytes
  //   and the largest free block - or when host memory for tree nodes ran out.
  //   On error nothing changed.
  // Context: O(log n); may allocate host memory (node pool, amortized); does
  //   not block.
  // Locking: caller holds the heap mutex.
  result<range> allocate(std::uint64_t size, std::uint64_t alignment = 0);

  // Returns r's block and merges it with free buddies.
  // Errors (nothing changes on error):
  //   invalid_argument - r.offset outside the range, r.offset not the start of
  //     an allocated block (it lies inside one), or r's size / block_size do
  //     not match the allocation at that offset;
  //   bad_state - r is not allocated: its offset lies in a free block (double
  //     free), or the block at that offset is a newer allocation (r.id differs:
  //     a stale range freed twice after the space was reused);
  //   invalid_argument - r's offset, id and sizes name a live allocation but
  //     r.node is not its node (the range was altered or made up).
  //   The checks above run in this order whatever r.node holds, so a bad
  //   range gets the error it got before ranges carried a node.
  // Context: O(1) to find the block plus at most O(log n) merges; a refused
  //   free is O(log n) and allocates its message; a valid free never allocates
  //   or fails; does not block.
  // Locking: caller holds the heap mutex.
  status free(const range& r);

  // Statistics snapshot. O(1) (copies the per-order counters).
  range_allocator_stats stats() const noexcept;

  std::uint64_t size() const noexcept { return size_; }
  std::uint64_t min_block() const noexcept { return min_block_; }
  std::uint64_t free_bytes() const noexcept { return free_bytes_; }
  std::uint64_t largest_free_block() const noexcept;

  // Walks the whole tree and checks every invariant listed in the Overview.
  // Errors: bad_state naming the first violation. O(nodes): for tests and
  // debugging only.
  status validate() const;

 private:
  using index = std::uint32_t;
  static constexpr index npos = std::numeric_limits<index>::max();

  enum class node_state : std::uint8_t { free, allocated, split, unused };

  // A block. Children are allocated as an adjacent pair: left = children,
  // right = children + 1, so a node's buddy is found without search.
  struct node {
    std::uint64_t offset = 0;
    std::uint64_t requested = 0;  // allocated: bytes requested
    std::uint64_t id = 0;         // allocated: allocation id
    index parent = npos;
    index children = npos;  // split: left child; otherwise npos
    index prev = npos;      // free: free-list links of this order
    index next = npos;      // free: free-list link; unused: next unused pair
    std::uint8_t order = 0;
    node_state state = node_state::unused;
  };

  range_allocator(std::uint64_t size, std::uint64_t min_block);

  std::uint64_t block_bytes(unsigned order) const noexcept { return min_block_ << order; }
  void push_free(index i) noexcept;
  void remove_free(index i) noexcept;
  // Makes sure `pairs` child pairs can be taken without allocating.
  status reserve_pairs(std::uint64_t pairs);
  index take_pair() noexcept;            // after reserve_pairs
  void release_pair(index left) noexcept;
  index find_leaf(std::uint64_t offset) const noexcept;
  // free()'s error path: the error for a range that failed the node check.
  status diagnose_bad_free(const range& r) const;
  std::string describe_block(index i) const;
  // validate()'s pieces: what the tree walk counts, one node, the free lists.
  struct tree_tally {
    std::array<std::uint64_t, range_allocator_max_orders> free_seen{};
    std::uint64_t free_bytes = 0;
    std::uint64_t used_block = 0;
    std::uint64_t used_requested = 0;
    std::uint64_t allocations = 0;
  };
  status validate_node(index i, tree_tally& t, std::vector<index>& stack) const;
  status validate_free_lists(const tree_tally& t) const;

  std::uint64_t size_ = 0;
  std::uint64_t min_block_ = 0;
  unsigned max_order_ = 0;
  std::vector<node> nodes_;
  std::vector<index> roots_;  // by increasing offset (decreasing order)
  index unused_pairs_ = npos;
  std::uint64_t unused_pair_count_ = 0;

  std::array<index, range_allocator_max_orders> free_head_{};
  std::array<std::uint64_t, range_allocator_max_orders> free_count_{};
  std::uint64_t free_orders_mask_ = 0;  // bit k set <=> free_count_[k] > 0

  std::uint64_t free_bytes_ = 0;
  std::uint64_t used_block_bytes_ = 0;
  std::uint64_t used_requested_bytes_ = 0;
  std::uint64_t allocation_count_ = 0;
  std::uint64_t next_id_ = 1;
};

}  // namespace xbuf
