// SPDX-License-Identifier: MIT
//
// buffer_index.hpp - buffer ids to buffers in O(1): a slot table.
//
// Overview
//   The manager looks a buffer up on nearly every call (free, map, fence,
//   CPU access...). A std::map made that O(log n) in the live count, a
//   pointer chase per level: at a million live buffers the lookup alone was
//   a quarter of an allocate+free pair (issue 11, "Growth"). Here an id
//   names its slot directly, as the kernel's idr / xarray does for GEM
//   handles:
//       id == (generation << 32) | (slot + 1)        id 0 is never issued
//   A freed slot is reused (LIFO: its memory is the likeliest in cache) with
//   its generation bumped, so an id is never issued twice: a stale id - a
//   client's double free, an export record that outlived its buffer - finds
//   a slot of another generation and is not found, exactly as a missing map
//   key was. A slot whose generation would wrap is retired, never reused.
//   The first ids a fresh index issues are 1, 2, 3, ...
//
//   claim() issues an id before its buffer exists (a buffer is made with its
//   id); fill() stores the buffer, cancel() gives the id up unused.
//
// Rules
//   - Not locked: the memory manager's mutex guards it, as it did the map.
//   - find() returns nullptr for an id never issued, freed, or claimed but
//     not yet filled.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "allocator/buffer.hpp"

namespace xbuf {

class buffer_index {
 public:
  // A fresh id, reserved until fill() or cancel(). Context: may allocate
  // (the table grows by doubling; bad_alloc propagates).
  buffer_id claim();
  // Stores `buf` under `id`, which claim() returned and nothing filled yet.
  void fill(buffer_id id, std::shared_ptr<buffer> buf) noexcept;
  // Gives up a claimed or filled id: the slot goes back for reuse under a
  // new generation. An id that is not current is ignored.
  void erase(buffer_id id) noexcept;
  void cancel(buffer_id id) noexcept { erase(id); }

  // The buffer under `id`, or nullptr.
  const std::shared_ptr<buffer>* find(buffer_id id) const noexcept;

  // Buffers stored now.
  std::size_t size() const noexcept { return live_; }

  // f(buffer_id, const std::shared_ptr<buffer>&) for every stored buffer,
  // in slot order (not id order). f must not change the index.
  template <class F>
  void for_each(F&& f) const {
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].buf) f(id_of(i), slots_[i].buf);
    }
  }

 private:
  struct slot {
    std::shared_ptr<buffer> buf;
    std::uint32_t generation = 0;
    bool claimed = false;
  };
  buffer_id id_of(std::size_t i) const noexcept {
    return (std::uint64_t{slots_[i].generation} << 32) | (i + 1);
  }
  // The index of the slot `id` names if that id is current, else npos.
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::size_t slot_of(buffer_id id) const noexcept;

  std::vector<slot> slots_;
  std::vector<std::uint32_t> free_;  // reusable slot indices, last freed last
  std::size_t live_ = 0;
};

}  // namespace xbuf
