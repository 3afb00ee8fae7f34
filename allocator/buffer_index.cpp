// SPDX-License-Identifier: MIT
#include "allocator/buffer_index.hpp"

#include <limits>
#include <new>

namespace xbuf {

buffer_id buffer_index::claim() {
  std::size_t i;
  if (!free_.empty()) {
    i = free_.back();
    free_.pop_back();
  } else {
    // Slot numbers are the id's low 32 bits, less one.
    if (slots_.size() >= std::numeric_limits<std::uint32_t>::max()) throw std::bad_alloc();
    i = slots_.size();
    slots_.emplace_back();
  }
  slots_[i].claimed = true;
  return id_of(i);
}

std::size_t buffer_index::slot_of(buffer_id id) const noexcept {
  const std::uint64_t low = id & 0xffffffffu;
  if (low == 0 || low > slots_.size()) return npos;
  const slot& s = slots_[low - 1];
  if (!s.claimed || s.generation != (id >> 32)) return npos;
  return static_cast<std::size_t>(low - 1);
}

void buffer_index::fill(buffer_id id, std::shared_ptr<buffer> buf) noexcept {
  const std::size_t i = slot_of(id);
  if (i == npos || slots_[i].buf) return;  // not claimed, or filled already: a caller's bug, ignored
  slots_[i].buf = std::move(buf);
  ++live_;
}

void buffer_index::erase(buffer_id id) noexcept {
  const std::size_t i = slot_of(id);
  if (i == npos) return;
  slot& s = slots_[i];
  if (s.buf) --live_;
  s.buf.reset();
  s.claimed = false;
  // A generation that would wrap around retires its slot: its ids were all
  // issued once already.
  if (s.generation == std::numeric_limits<std::uint32_t>::max()) return;
  ++s.generation;
  free_.push_back(static_cast<std::uint32_t>(i));
}

const std::shared_ptr<buffer>* buffer_index::find(buffer_id id) const noexcept {
  const std::size_t i = slot_of(id);
  return i != npos && slots_[i].buf ? &slots_[i].buf : nullptr;
}

}  // namespace xbuf
