// SPDX-License-Identifier: MIT
#include "allocator/range_allocator.hpp"

#include <algorithm>
#include <bit>
#include <new>

namespace xbuf {

namespace {

constexpr std::uint64_t smallest_min_block = 4096;

// Appends "0x..." to out. Built with append rather than operator+ chains,
// which trip GCC 12's -Wrestrict false positive (PR 105651) at -O3.
void append_hex(std::string& out, std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  char buf[16];
  int n = 0;
  do {
    buf[n++] = digits[v & 0xf];
    v >>= 4;
  } while (v != 0);
  out.append("0x");
  while (n > 0) out.push_back(buf[--n]);
}

std::string hex(std::uint64_t v) {
  std::string out;
  append_hex(out, v);
  return out;
}

}  // namespace

result<range_allocator> range_allocator::create(std::uint64_t size, std::uint64_t min_block) {
  if (min_block < smallest_min_block || !std::has_single_bit(min_block)) {
    return fail(errc::invalid_argument,
                "range allocator: min_block " + std::to_string(min_block) +
                    " must be a power of two >= " + std::to_string(smallest_min_block));
  }
  if (size < min_block) {
    return fail(errc::invalid_argument, "range allocator: size " + std::to_string(size) +
                                            " is smaller than min_block " +
                                            std::to_string(min_block));
  }
  if (size % min_block != 0) {
    return fail(errc::invalid_argument,
                "range allocator: size " + std::to_string(size) + " is not a multiple of min_block " +
                    std::to_string(min_block) + " (round it down to " +
                    std::to_string(size - size % min_block) + ")");
  }
  try {
    return range_allocator(size, min_block);
  } catch (const std::bad_alloc&) {
    return fail(errc::out_of_memory, "range allocator: no host memory for the root blocks");
  }
}

range_allocator::range_allocator(std::uint64_t size, std::uint64_t min_block)
    : size_(size), min_block_(min_block) {
  free_head_.fill(npos);
  const std::uint64_t chunks = size / min_block;
  const auto roots = static_cast<std::size_t>(std::popcount(chunks));
  nodes_.reserve(roots + 1);
  roots_.reserve(roots);
  // Largest root first: each root's offset is then a sum of larger powers of
  // two, a multiple of its own size, which keeps every block naturally aligned.
  std::uint64_t offset = 0;
  for (int order = std::bit_width(chunks) - 1; order >= 0; --order) {
    if ((chunks >> order & 1U) == 0) {
      continue;
    }
    node n;
    n.offset = offset;
    n.order = static_cast<std::uint8_t>(order);
    const auto i = static_cast<index>(nodes_.size());
    nodes_.push_back(n);
    roots_.push_back(i);
    push_free(i);
    offset += block_bytes(static_cast<unsigned>(order));
  }
  // Child pairs then start at even indices, so a node's buddy is i ^ 1: free()
  // checks it without loading the parent, one cache miss fewer per free once
  // the pool outgrows the cache. The padding node never enters the tree.
  if (nodes_.size() % 2 != 0) {
    nodes_.emplace_back();
  }
  max_order_ = nodes_[roots_.front()].order;
  free_bytes_ = size;
}

void range_allocator::push_free(index i) noexcept {
  node& n = nodes_[i];
  n.state = node_state::free;
  n.prev = npos;
  n.next = free_head_[n.order];
  if (n.next != npos) {
    nodes_[n.next].prev = i;
  }
  free_head_[n.order] = i;
  ++free_count_[n.order];
  free_orders_mask_ |= std::uint64_t{1} << n.order;
}

void range_allocator::remove_free(index i) noexcept {
  node& n = nodes_[i];
  assert(n.state == node_state::free);
  if (n.prev != npos) {
    nodes_[n.prev].next = n.next;
  } else {
    free_head_[n.order] = n.next;
  }
  if (n.next != npos) {
    nodes_[n.next].prev = n.prev;
  }
  n.prev = n.next = npos;
  if (--free_count_[n.order] == 0) {
    free_orders_mask_ &= ~(std::uint64_t{1} << n.order);
  }
}

status range_allocator::reserve_pairs(std::uint64_t pairs) {
  if (pairs <= unused_pair_count_) {
    return ok();
  }
  const std::uint64_t grow = 2 * (pairs - unused_pair_count_);
  // npos stays out of reach so it can never be a real index.
  if (grow > npos - 1 - nodes_.size()) {
    return fail(errc::out_of_memory, "range allocator: block tree would exceed " +
                                         std::to_string(npos - 1) + " nodes");
  }
  const std::size_t needed = nodes_.size() + grow;
  if (needed > nodes_.capacity()) {
    // Geometric growth keeps the pool's cost amortized O(1) per split; an
    // exact reserve would reallocate on every split.
    const std::size_t cap =
        std::min<std::size_t>(std::max(needed, 2 * nodes_.capacity()), std::size_t{npos} - 1);
    try {
      nodes_.reserve(cap);
    } catch (const std::bad_alloc&) {
      return fail(errc::out_of_memory, "range allocator: no host memory for " +
                                           std::to_string(cap) + " block-tree nodes");
    }
  }
  return ok();
}

range_allocator::index range_allocator::take_pair() noexcept {
  if (unused_pairs_ != npos) {
    const index left = unused_pairs_;
    unused_pairs_ = nodes_[left].next;
    --unused_pair_count_;
    return left;
  }
  // reserve_pairs() made room: push_back cannot reallocate, hence cannot throw.
  assert(nodes_.size() + 2 <= nodes_.capacity());
  const auto left = static_cast<index>(nodes_.size());
  nodes_.emplace_back();
  nodes_.emplace_back();
  return left;
}

void range_allocator::release_pair(index left) noexcept {
  nodes_[left].state = node_state::unused;
  nodes_[left + 1].state = node_state::unused;
  nodes_[left].next = unused_pairs_;
  unused_pairs_ = left;
  ++unused_pair_count_;
}

result<range> range_allocator::allocate(std::uint64_t size, std::uint64_t alignment) {
  const std::uint64_t largest_root = block_bytes(max_order_);
  if (size == 0) {
    return fail(errc::invalid_argument, "range allocator: cannot allocate 0 bytes");
  }
  if (size > size_) {
    return fail(errc::invalid_argument, "range allocator: request of " + std::to_string(size) +
                                            " bytes is larger than the whole range (" +
                                            std::to_string(size_) + " bytes)");
  }
  if (alignment != 0 && !std::has_single_bit(alignment)) {
    return fail(errc::invalid_argument, "range allocator: alignment " +
                                            std::to_string(alignment) + " is not a power of two");
  }
  const std::uint64_t need = std::max({size, min_block_, alignment});
  // Checked before bit_ceil, which is undefined above 2^63 (largest_root <= 2^63).
  if (need > largest_root) {
    return fail(errc::invalid_argument,
                "range allocator: request of " + std::to_string(size) + " bytes (alignment " +
                    std::to_string(alignment) + ") needs a block larger than the largest root " +
                    std::to_string(largest_root) + " bytes; it can never be satisfied");
  }
  const std::uint64_t block = std::bit_ceil(need);
  const auto order = static_cast<unsigned>(std::countr_zero(block / min_block_));

  const std::uint64_t candidates = free_orders_mask_ & ~((std::uint64_t{1} << order) - 1);
  if (candidates == 0) {
    return fail(errc::out_of_memory,
                "range allocator: cannot allocate " + std::to_string(size) + " bytes (block " +
                    std::to_string(block) + ", alignment " + std::to_string(alignment) + "): " +
                    std::to_string(free_bytes_) + " bytes free, largest free block " +
                    std::to_string(largest_free_block()) + " bytes");
  }
  auto from = static_cast<unsigned>(std::countr_zero(candidates));
  // Reserve, then split: the only step that can fail comes before any change.
  if (status s = reserve_pairs(from - order); !s) {
    return std::move(s).err();
  }

  index i = free_head_[from];
  remove_free(i);
  while (from > order) {
    const index left = take_pair();
    const index right = left + 1;
    --from;
    node& l = nodes_[left];
    l = node{};
    l.offset = nodes_[i].offset;
    l.order = static_cast<std::uint8_t>(from);
    l.parent = i;
    node& r = nodes_[right];
    r = node{};
    r.offset = nodes_[i].offset + block_bytes(from);
    r.order = static_cast<std::uint8_t>(from);
    r.parent = i;
    nodes_[i].state = node_state::split;
    nodes_[i].children = left;
    // The upper half stays free; the lower half is split further or handed
    // out, so allocations pack towards low offsets within a block.
    push_free(right);
    i = left;
  }

  node& n = nodes_[i];
  n.state = node_state::allocated;
  n.requested = size;
  n.id = next_id_++;
  free_bytes_ -= block;
  used_block_bytes_ += block;
  used_requested_bytes_ += size;
  ++allocation_count_;
  return range{n.offset, size, block, n.id, i};
}

range_allocator::index range_allocator::find_leaf(std::uint64_t offset) const noexcept {
  // Roots are few (one per set bit of size / min_block) and sorted by offset.
  index i = roots_.front();
  for (index root : roots_) {
    if (nodes_[root].offset > offset) {
      break;
    }
    i = root;
  }
  while (nodes_[i].state == node_state::split) {
    const index left = nodes_[i].children;
    i = offset < nodes_[left + 1].offset ? left : left + 1;
  }
  return i;
}

std::string range_allocator::describe_block(index i) const {
  const node& n = nodes_[i];
  std::string out("[");
  append_hex(out, n.offset);
  out.append(", ");
  append_hex(out, n.offset + block_bytes(n.order));
  out.push_back(')');
  return out;
}

status range_allocator::diagnose_bad_free(const range& r) const {
  const auto what = [&r] {
    return "range allocator: free of range at " + hex(r.offset) + " (size " +
           std::to_string(r.size) + ", id " + std::to_string(r.id) + ")";
  };
  if (r.offset >= size_) {
    return fail(errc::invalid_argument,
                what() + ": offset is outside the range [0, " + hex(size_) + ")");
  }
  // The handle's node cannot be trusted here, so the offset is located the
  // slow way; the walk is what says where a bad offset lands.
  const index i = find_leaf(r.offset);
  const node& n = nodes_[i];
  if (n.state == node_state::free) {
    return fail(errc::bad_state,
                what() + ": not allocated, offset lies in free block " + describe_block(i) +
                    " (double free?)");
  }
  assert(n.state == node_state::allocated);
  if (n.offset != r.offset) {
    return fail(errc::invalid_argument, what() + ": offset is inside allocation " +
                                            describe_block(i) + " (id " + std::to_string(n.id) +
                                            "), not its start");
  }
  if (n.id != r.id) {
    return fail(errc::bad_state, what() + ": that allocation was already freed; offset now holds "
                                        "allocation id " +
                                        std::to_string(n.id) + " (double free of a stale range)");
  }
  const std::uint64_t block = block_bytes(n.order);
  if (n.requested != r.size || block != r.block_size) {
    return fail(errc::invalid_argument,
                what() + ": size/block_size " + std::to_string(r.size) + "/" +
                    std::to_string(r.block_size) + " do not match the allocation's " +
                    std::to_string(n.requested) + "/" + std::to_string(block));
  }
  // Offset, id and sizes name a live allocation, but the node does not: the
  // range was altered or made up, and freeing by it would trust a lie.
  return fail(errc::invalid_argument, what() + ": node " + std::to_string(r.node) +
                                          " is not the allocation's node " + std::to_string(i) +
                                          " (a forged or altered range)");
}

status range_allocator::free(const range& r) {
  // The handle names its node, so a valid free finds its block in O(1). A
  // node that matches offset, id and sizes is that allocation: ids are never
  // reused, and an allocated node keeps its index until freed. Anything else
  // goes to the diagnosis, which builds the message (a valid free must not
  // allocate) and changes nothing.
  if (r.node >= nodes_.size()) {
    return diagnose_bad_free(r);
  }
  auto i = static_cast<index>(r.node);
  node* n = &nodes_[i];
  const std::uint64_t block = block_bytes(n->order);
  if (n->state != node_state::allocated || n->offset != r.offset || n->id != r.id ||
      n->requested != r.size || block != r.block_size) {
    return diagnose_bad_free(r);
  }

  // From here on nothing can fail or allocate.
  free_bytes_ += block;
  used_block_bytes_ -= block;
  used_requested_bytes_ -= n->requested;
  --allocation_count_;
  n->requested = 0;
  n->id = 0;
  n->state = node_state::free;
  while (n->parent != npos) {
    const index buddy = i ^ 1U;
    if (nodes_[buddy].state != node_state::free) {
      break;
    }
    const index parent = n->parent;
    remove_free(buddy);
    release_pair(i & ~index{1});
    nodes_[parent].children = npos;
    i = parent;
    n = &nodes_[i];
  }
  push_free(i);
  return ok();
}

std::uint64_t range_allocator::largest_free_block() const noexcept {
  if (free_orders_mask_ == 0) {
    return 0;
  }
  return block_bytes(static_cast<unsigned>(std::bit_width(free_orders_mask_) - 1));
}

range_allocator_stats range_allocator::stats() const noexcept {
  range_allocator_stats s;
  s.size = size_;
  s.min_block = min_block_;
  s.free_bytes = free_bytes_;
  s.used_block_bytes = used_block_bytes_;
  s.used_requested_bytes = used_requested_bytes_;
  s.internal_fragmentation_bytes = used_block_bytes_ - used_requested_bytes_;
  s.largest_free_block = largest_free_block();
  s.allocation_count = allocation_count_;
  s.max_order = max_order_;
  s.free_blocks = free_count_;
  if (used_block_bytes_ != 0) {
    s.internal_fragmentation = static_cast<double>(s.internal_fragmentation_bytes) /
                               static_cast<double>(used_block_bytes_);
  }
  if (free_bytes_ != 0) {
    s.external_fragmentation = 1.0 - static_cast<double>(s.largest_free_block) /
                                         static_cast<double>(free_bytes_);
  }
  return s;
}

namespace {

status corrupt(const std::string& why) { return fail(errc::bad_state, "range allocator: " + why); }

}  // namespace

status range_allocator::validate_node(index i, tree_tally& t, std::vector<index>& stack) const {
  const node& n = nodes_[i];
  const std::uint64_t bytes = block_bytes(n.order);
  if (n.offset % bytes != 0) return corrupt("block " + describe_block(i) + " is not aligned to its size");
  switch (n.state) {
    case node_state::free:
      ++t.free_seen[n.order];
      t.free_bytes += bytes;
      if (n.parent != npos) {
        const index buddy = i ^ 1U;
        if (nodes_[buddy].state == node_state::free) {
          return corrupt("free buddies " + describe_block(i) + " and " + describe_block(buddy) +
                         " were not merged");
        }
      }
      return ok();
    case node_state::allocated:
      ++t.allocations;
      t.used_block += bytes;
      t.used_requested += n.requested;
      if (n.requested == 0 || n.requested > bytes) {
        return corrupt("allocation " + describe_block(i) + " has requested size " +
                       std::to_string(n.requested));
      }
      return ok();
    case node_state::split: {
      const index left = n.children;
      if (left == npos || n.order == 0) return corrupt("split block " + describe_block(i) + " has no children");
      // free() takes a node's buddy to be i ^ 1.
      if (left % 2 != 0) {
        return corrupt("children of " + describe_block(i) + " start at an odd index");
      }
      for (index c : {left, static_cast<index>(left + 1)}) {
        const node& child = nodes_[c];
        if (child.parent != i || child.order + 1 != n.order ||
            child.offset != n.offset + (c == left ? 0 : block_bytes(child.order))) {
          return corrupt("child " + describe_block(c) + " of " + describe_block(i) + " is inconsistent");
        }
        stack.push_back(c);
      }
      return ok();
    }
    case node_state::unused:
      break;
  }
  return corrupt("unused node reachable from the tree at " + describe_block(i));
}

status range_allocator::validate_free_lists(const tree_tally& t) const {
  for (unsigned k = 0; k < range_allocator_max_orders; ++k) {
    std::uint64_t listed = 0;
    for (index i = free_head_[k]; i != npos; i = nodes_[i].next) {
      if (nodes_[i].state != node_state::free || nodes_[i].order != k || ++listed > free_count_[k]) {
        return corrupt("free list of order " + std::to_string(k) + " is corrupt");
      }
    }
    if (listed != free_count_[k] || t.free_seen[k] != free_count_[k] ||
        ((free_orders_mask_ >> k & 1U) != 0) != (free_count_[k] != 0)) {
      return corrupt("order " + std::to_string(k) + ": " + std::to_string(t.free_seen[k]) +
                     " free blocks in the tree, " + std::to_string(listed) + " listed, count " +
                     std::to_string(free_count_[k]));
    }
  }
  return ok();
}

status range_allocator::validate() const {
  tree_tally t;
  std::uint64_t expected_offset = 0;
  std::vector<index> stack;
  for (index root : roots_) {
    if (nodes_[root].offset != expected_offset || nodes_[root].parent != npos) {
      return corrupt("root " + describe_block(root) + " is misplaced");
    }
    expected_offset += block_bytes(nodes_[root].order);
    stack.push_back(root);
    while (!stack.empty()) {
      const index i = stack.back();
      stack.pop_back();
      if (auto s = validate_node(i, t, stack); !s) return s;
    }
  }
  if (expected_offset != size_) {
    return corrupt("roots cover " + std::to_string(expected_offset) + " bytes, not " +
                   std::to_string(size_));
  }
  if (auto s = validate_free_lists(t); !s) return s;
  if (t.free_bytes != free_bytes_ || t.used_block != used_block_bytes_ ||
      t.used_requested != used_requested_bytes_ || t.allocations != allocation_count_ ||
      t.used_block + t.free_bytes != size_) {
    return corrupt("byte accounting is off: free " + std::to_string(t.free_bytes) + "/" +
                   std::to_string(free_bytes_) + ", used " + std::to_string(t.used_block) + "/" +
                   std::to_string(used_block_bytes_) + ", size " + std::to_string(size_));
  }
  return ok();
}

}  // namespace xbuf
