// SPDX-License-Identifier: MIT
#include "client/chunk_pool.hpp"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <string>
#include <utility>

namespace xbuf::client {

namespace {

constexpr std::uint64_t page = 4096;

std::uint64_t round_up(std::uint64_t n, std::uint64_t to) { return (n + to - 1) / to * to; }

std::string pointer_name(const void* p) {
  return "pointer 0x" + [&] {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(reinterpret_cast<std::uintptr_t>(p)));
    return std::string(buf);
  }();
}

}  // namespace

chunk_pool::chunk_pool(allocator& a, chunk_pool_options o) : a_(a), o_(std::move(o)) {
  xbuf::mutex_lock lock(mutex_);
  partial_.resize(static_cast<std::size_t>(std::countr_zero(o_.max_block) - std::countr_zero(o_.min_block)) + 1);
  if (o_.watch_pressure) {
    a_.on_memory_pressure([pressed = pressed_](const pressure_event&) { pressed->store(true); });
  }
}

chunk_pool::~chunk_pool() {
  if (o_.watch_pressure) a_.on_memory_pressure(nullptr);
  xbuf::mutex_lock lock(mutex_);
  for (auto& [base, c] : chunks_) give_back(*c);
  chunks_.clear();
}

std::size_t chunk_pool::class_of(std::uint64_t size) const noexcept {
  const std::uint64_t block = std::max(std::bit_ceil(size), o_.min_block);
  return static_cast<std::size_t>(std::countr_zero(block) - std::countr_zero(o_.min_block));
}

result<std::unique_ptr<chunk_pool::chunk>> chunk_pool::take(std::uint64_t bytes, std::uint64_t block) {
  const alloc_options want{.size = bytes, .placements = o_.placements, .name = block != 0 ? "chunk" : "large",
                           .cpu_access = false, .no_evict = true, .alignment = 0};
  auto id = a_.alloc(want);
  // Our own idle chunks may be what fills the domain (they cannot be
  // evicted): give them back and try once more.
  if (!id && (id.code() == errc::out_of_memory || id.code() == errc::quota_exceeded) && trim_locked(true) > 0) {
    id = a_.alloc(want);
  }
  if (!id) return std::move(id).err();
  // Pinned: nothing moves a chunk while blocks of it are handed out.
  auto at = a_.attach(*id, o_.device, attach_mode::pinned);
  auto view = at ? a_.map(*at) : result<mapped_view>(fail(at.code(), at.err().message));
  if (!view) {
    (void)a_.free(*id);
    return std::move(view).err();
  }
  auto c = std::make_unique<chunk>();
  c->buffer = *id;
  c->attachment = *at;
  c->base = reinterpret_cast<std::uintptr_t>(view->data);
  c->size = bytes;
  c->block = block;
  if (block != 0) {
    const auto n = static_cast<std::uint32_t>(bytes / block);
    c->in_use.assign(n, false);
    c->free_blocks.reserve(n);
    for (std::uint32_t i = n; i > 0; --i) c->free_blocks.push_back(i - 1);  // lowest address first
  }
  ++stats_.chunk_allocs;
  return c;
}

void chunk_pool::give_back(chunk& c) {
  (void)a_.free(c.buffer);  // its attachment goes with it; a dead connection already freed it
  ++stats_.chunk_frees;
}

result<void*> chunk_pool::allocate(std::uint64_t size) {
  if (size == 0) return fail(errc::invalid_argument, "chunk_pool: allocate 0 bytes");
  xbuf::mutex_lock lock(mutex_);
  watch_locked();
  if (stats_.idle_chunks > o_.keep_idle) trim_locked(false);
  if (size > o_.max_block) {
    auto c = take(round_up(size, page), 0);
    if (!c) return std::move(c).err();
    (*c)->used = 1;
    void* p = reinterpret_cast<void*>((*c)->base);
    stats_.bytes_in_use += (*c)->size;
    ++stats_.large_buffers;
    chunks_.emplace((*c)->base, std::move(*c));
    return p;
  }
  const std::size_t cls = class_of(size);
  const std::uint64_t block = o_.min_block << cls;
  auto& partial = partial_[cls];
  chunk* c = nullptr;
  while (!partial.empty() && c == nullptr) {
    auto it = chunks_.find(partial.back());
    if (it != chunks_.end() && it->second->block == block && !it->second->free_blocks.empty()) {
      c = it->second.get();
    } else {
      partial.pop_back();  // given back or full since it was listed
    }
  }
  if (c == nullptr) {
    auto fresh = take(o_.chunk_size, block);
    if (!fresh) return std::move(fresh).err();
    c = fresh->get();
    partial.push_back(c->base);
    chunks_.emplace(c->base, std::move(*fresh));
  }
  const std::uint32_t i = c->free_blocks.back();
  c->free_blocks.pop_back();
  if (c->free_blocks.empty()) partial.pop_back();  // c is partial.back()
  if (c->used++ == 0 && c->idle_since != std::chrono::steady_clock::time_point{}) --stats_.idle_chunks;
  c->in_use[i] = true;
  stats_.bytes_in_use += block;
  return reinterpret_cast<void*>(c->base + std::uint64_t{i} * block);
}

status chunk_pool::deallocate(void* p) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  xbuf::mutex_lock lock(mutex_);
  watch_locked();
  auto it = chunks_.upper_bound(addr);
  if (it == chunks_.begin()) return fail(errc::not_found, "chunk_pool: " + pointer_name(p) + " is not from this pool");
  --it;
  chunk& c = *it->second;
  if (addr >= c.base + c.size) return fail(errc::not_found, "chunk_pool: " + pointer_name(p) + " is not from this pool");
  if (c.block == 0) {
    if (addr != c.base) {
      return fail(errc::not_found, "chunk_pool: " + pointer_name(p) + " is inside a large buffer, not its start");
    }
    stats_.bytes_in_use -= c.size;
    --stats_.large_buffers;
    give_back(c);
    chunks_.erase(it);
    return ok();
  }
  const std::uint64_t off = addr - c.base;
  if (off % c.block != 0) {
    return fail(errc::not_found, "chunk_pool: " + pointer_name(p) + " is inside a block, not its start");
  }
  const auto i = static_cast<std::uint32_t>(off / c.block);
  if (!c.in_use[i]) return fail(errc::bad_state, "chunk_pool: " + pointer_name(p) + " is already free");
  c.in_use[i] = false;
  c.free_blocks.push_back(i);
  if (c.free_blocks.size() == 1) partial_[class_of(c.block)].push_back(c.base);
  stats_.bytes_in_use -= c.block;
  if (--c.used == 0) {
    c.idle_since = std::chrono::steady_clock::now();
    ++stats_.idle_chunks;
  }
  return ok();
}

std::size_t chunk_pool::trim_locked(bool everything) {
  const auto now = std::chrono::steady_clock::now();
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::uintptr_t>> idle;
  for (const auto& [base, c] : chunks_) {
    if (c->block != 0 && c->used == 0) idle.emplace_back(c->idle_since, base);
  }
  std::sort(idle.begin(), idle.end());  // oldest first
  const std::size_t keep = everything ? 0 : o_.keep_idle;
  std::size_t gone = 0;
  for (std::size_t k = 0; k + keep < idle.size(); ++k) {
    if (!everything && now - idle[k].first < o_.idle_time) break;
    auto it = chunks_.find(idle[k].second);
    give_back(*it->second);
    chunks_.erase(it);
    --stats_.idle_chunks;
    ++gone;
  }
  return gone;
}

void chunk_pool::watch_locked() {
  if (!o_.watch_pressure) return;
  const auto now = std::chrono::steady_clock::now();
  if (now - last_poll_ < o_.poll_interval) return;
  last_poll_ = now;
  (void)a_.poll_events(std::chrono::milliseconds(0));  // a dead connection fails the next real call
  if (pressed_->exchange(false) && trim_locked(true) > 0) ++stats_.pressure_releases;
}

std::size_t chunk_pool::trim() {
  xbuf::mutex_lock lock(mutex_);
  watch_locked();
  return trim_locked(false);
}

std::size_t chunk_pool::release_idle() {
  xbuf::mutex_lock lock(mutex_);
  return trim_locked(true);
}

chunk_pool_stats chunk_pool::stats() const {
  xbuf::mutex_lock lock(mutex_);
  chunk_pool_stats s = stats_;
  s.chunks = chunks_.size() - s.large_buffers;
  return s;
}

}  // namespace xbuf::client
