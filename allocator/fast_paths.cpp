// SPDX-License-Identifier: MIT
//
// fast_paths.cpp - the manager's calls that never wait (memory_manager.hpp,
// "calls that never wait"): for xbufd's io thread, which must not block.
//
// Implementation notes
//   - A try takes mutex_ once and trylocks the buffer's reservation under
//     it - allowed by the lock order, as eviction does: the rule forbids
//     *waiting* for a reservation with mutex_ held, not trying one. A
//     contended reservation is a refusal (nullopt): the blocking twin then
//     takes the locks in order on the worker pool.
//   - try_free and try_end_cpu_access repeat the body of their twins
//     (memory_manager.cpp, cpu_access.cpp) with the locks taken the other
//     way; their checks and messages must stay the same.
//     tests/server/handlers_test checks that an inline request answers what
//     the pool's would.
//   - try_allocate only decides whether allocate() may run on the caller's
//     thread; allocate() does the work, so the two cannot drift.
#include <algorithm>
#include <bit>
#include <mutex>

#include "allocator/detail/manager_names.hpp"
#include "allocator/memory_manager.hpp"
#include "core/guarded.hpp"

namespace xbuf {

using detail::buffer_name;
using detail::gone;
using detail::unknown_buffer;

namespace {

constexpr std::string_view who = "memory manager";
constexpr std::uint64_t page = 4096;

// The reservation of `b` if nobody holds it now, owned by the lock returned;
// else an empty lock. The analysis cannot follow a trylock into a
// unique_lock; callers assert_held() on success, as lock_buffer() does.
std::unique_lock<ww_mutex> try_reserve(buffer& b) XBUF_NO_THREAD_SAFETY_ANALYSIS {
  if (!b.resv.mutex().trylock()) return {};
  return std::unique_lock<ww_mutex>(b.resv.mutex(), std::adopt_lock);
}

}  // namespace

std::optional<result<buffer_id>> memory_manager::try_allocate(owner_id owner, const alloc_request& req) {
  if (req.timeout != fence_clock::duration::zero()) return std::nullopt;
  const bool room_now = [&] {
    // Requests that fail allocate()'s checks fail before it looks for room:
    // fast either way, so they run here too.
    if (req.size == 0 || req.placements.empty()) return true;
    if (req.alignment != 0 && (!std::has_single_bit(req.alignment) || req.alignment > (1ull << 30))) return true;
    mutex_lock lock(mutex_);
    reap_locked();  // what allocate() does first: memory whose fences signaled counts
    const placement* unknown = nullptr;
    const std::vector<int> domains = domains_for(req.placements, -1, &unknown);
    if (unknown != nullptr) return true;  // invalid_argument
    for (std::size_t i = 0; i < domains.size(); ++i) {
      const int d = domains[i];
      // The first domain allocate() would try: large enough, and within
      // the owner's domain quota.
      if (at(d).capacity() < req.size || !accounts_.domain_allows(owner, d, req.size)) continue;
      // A free block of the rounded size, naturally aligned: no heap
      // rounds a request above the next power of two of its size,
      // alignment and page, so it fits without eviction. (A heap that
      // would fit it in less is only sent to the pool.)
      const std::uint64_t need = std::bit_ceil(std::max({req.size, req.alignment, page, config_.min_block}));
      if (at(d).stats().largest_free_block >= need) return true;
      // A full pageable heap is passed over for the next one unevicted
      // (make_room_locked): so here too.
      if (!falls_through_locked(domains, i)) return false;
    }
    return true;  // no domain may take it: too large or over quota, fails at once
  }();
  if (!room_now) return std::nullopt;
  return allocate(owner, req);
}

std::optional<status> memory_manager::try_free(owner_id owner, buffer_id id) {
  return guarded(who, "free", [&]() -> std::optional<status> {
    mutex_lock lock(mutex_);
    auto buf = find_locked(owner, id);
    if (!buf) return status(unknown_buffer(owner, id));
    auto resv = try_reserve(*buf);
    if (!resv) return std::nullopt;
    buf->resv.assert_held();
    if (buf->destroyed) return status(gone(id));
    if (buf->owner != owner) return status(unknown_buffer(owner, id));  // shared with it, not its own
    if (buf->owner_released) {
      return status(fail(errc::bad_state, buffer_name(id) + ": already freed (still attached by " +
                                              std::to_string(buf->attachments.size()) + " importers)"));
    }
    buf->owner_released = true;
    accounts_.owner_freed(*buf);
    (void)accounts_.end_all_cpu_access(*buf);
    destroy_if_unreachable_locked(*buf);
    return status(ok());
  });
}

std::optional<status> memory_manager::try_end_cpu_access(owner_id owner, buffer_id id) {
  return guarded(who, "end_cpu_access", [&]() -> std::optional<status> {
    mutex_lock lock(mutex_);
    auto buf = find_locked(owner, id);
    if (!buf) return status(unknown_buffer(owner, id));
    auto resv = try_reserve(*buf);
    if (!resv) return std::nullopt;
    buf->resv.assert_held();
    if (buf->destroyed) return status(gone(id));
    return accounts_.end_cpu_access(owner, *buf, "end_cpu_access " + buffer_name(id));
  });
}

std::size_t memory_manager::placed_buffers() const {
  mutex_lock lock(mutex_);
  std::size_t n = 0;
  for (const auto& h : heaps_) n += h->lru().size();
  return n;
}

}  // namespace xbuf
