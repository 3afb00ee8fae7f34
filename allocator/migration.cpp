// SPDX-License-Identifier: MIT
//
// migration.cpp - moving one buffer, and promoting evicted ones (validate).
//
// Implementation notes
//   - "Reserve, then add": the fence slot for the move is reserved before
//     anything changes, so the only step that can fail comes first.
//   - Importers hear of the move (move_notify) before it is irrevocable, with
//     the reservation held; their old mapping stays valid until every fence
//     the buffer had (which includes their work) and the move itself signal.
#include "allocator/memory_manager.hpp"

#include <algorithm>
#include <span>

#include "allocator/detail/manager_names.hpp"
#include "allocator/move_job.hpp"

namespace xbuf {

using detail::buffer_name;
using detail::gone;
using detail::unknown_buffer;

status memory_manager::move_locked(buffer& buf, placed to, memory_event_kind why) {
  buf.resv.assert_held();
  if (auto r = buf.resv.reserve_fences(1); !r) {
    at(to.domain).release(std::move(to.allocation), {});
    return r;
  }
  const placement from = at(buf.domain).where();
  const placement dest = at(to.domain).where();
  std::uint32_t notified = 0;
  for (const auto& att : buf.attachments) {
    if (att->mode != attach_mode::dynamic) continue;
    att->move_notify(move_notice{buf.id, att->id, from, dest});
    ++counters_.move_notifies;
    ++notified;
  }
  auto in_flight = buf.resv.fences(fence_usage::bookkeep);
  auto failed = failed_moves_;
  std::weak_ptr<buffer> weak;
  if (const auto* found = buffers_.find(buf.id)) weak = *found;
  fence_ptr moved = move_job::start(backend_, to.allocation.span, buf.backing.span, in_flight,
                                    config_.move_retries, [failed, weak](int error) {
                                      if (error == 0) return;
                                      failed->fetch_add(1);
                                      if (auto b = weak.lock()) b->lost = true;
                                    });
  buf.resv.add_fence(moved, fence_usage::kernel);
  // The old memory is read by the copy and may still be used by the
  // in-flight work: it is freed after all of them.
  in_flight.push_back(moved);
  auto& old_heap = at(buf.domain);
  accounts_.moved(buf, buf.domain, to.domain);
  if (old_heap.release(std::move(buf.backing), std::move(in_flight))) ++counters_.delayed_frees;
  old_heap.lru().erase(buf.lru_pos);
  auto& new_heap = at(to.domain);
  buf.lru_pos = new_heap.lru().insert(new_heap.lru().end(), &buf);
  events_.record({.kind = why, .owner = buf.owner, .buffer = buf.id, .bytes = buf.size, .from = buf.domain,
                  .to = to.domain, .notified = notified});
  buf.domain = to.domain;
  buf.backing = std::move(to.allocation);
  ++buf.generation;
  ++counters_.moves;
  counters_.bytes_moved += buf.size;
  if (why == memory_event_kind::evict) ++counters_.evictions;
  return ok();
}

status memory_manager::migrate_locked(buffer& buf, const std::vector<int>& domains,
                                      fence_clock::time_point deadline, const cancel_token* cancel,
                                      std::string_view why) {
  buf.resv.assert_held();
  auto room = make_room_locked(domains, buf.size, buf.alignment, &buf, deadline, cancel,
                               buffer_name(buf.id) + ": " + std::string(why));
  if (!room) return std::move(room).err();
  if (buf.destroyed) {
    at(room->domain).release(std::move(room->allocation), {});
    return gone(buf.id);
  }
  return move_locked(buf, std::move(*room), memory_event_kind::migrate);
}

status memory_manager::promote_locked(buffer& b, validate_report& report,
                                      fence_clock::time_point deadline, const cancel_token* cancel) {
  b.resv.assert_held();  // lock_all took it through an acquire context
  if (b.destroyed) return ok();
  // Pageable memory on any NUMA node is "in place" for pageable(): the
  // buffer is not moved between nodes to be nearer.
  const std::vector<int> preferred = domains_for(std::span(b.placements).first(1));
  if (std::find(preferred.begin(), preferred.end(), b.domain) != preferred.end()) {
    ++report.in_place;
    touch_locked(b);
    return ok();
  }
  if (b.pins > 0) return ok();  // pinned where an importer needs it
  const auto now = std::chrono::steady_clock::now();
  if (now - b.last_promotion < config_.promote_interval) {
    ++report.deferred;
    ++counters_.promotions_deferred;
    return ok();
  }
  b.last_promotion = now;
  auto room = make_room_locked(preferred, b.size, b.alignment, &b, deadline, cancel,
                               "validate " + buffer_name(b.id), b.owner);
  if (!room) {
    if (room.code() == errc::cancelled || room.code() == errc::timed_out) return std::move(room).err();
    ++report.no_room;
    return ok();
  }
  if (b.destroyed) {
    at(room->domain).release(std::move(room->allocation), {});
    return ok();
  }
  if (move_locked(b, std::move(*room), memory_event_kind::promote)) {
    touch_locked(b);  // validate is a use, wherever the buffer was
    ++report.promoted;
    ++counters_.promotions;
  }
  return ok();
}

result<validate_report> memory_manager::validate_unguarded(owner_id owner, std::span<const buffer_id> ids,
                                                 const cancel_token* cancel,
                                                 fence_clock::duration timeout) {
  const auto deadline = deadline_after(timeout);
  std::vector<std::shared_ptr<buffer>> bufs;
  {
    mutex_lock lock(mutex_);
    for (auto id : ids) {
      auto b = find_locked(owner, id);
      if (!b) return unknown_buffer(owner, id);
      bufs.push_back(std::move(b));
    }
  }
  std::vector<ww_mutex*> locks;
  for (auto& b : bufs) locks.push_back(&b->resv.mutex());
  ww_acquire_ctx ctx;
  if (auto s = lock_all(ctx, locks, cancel); !s) return std::move(s).err().prefixed("validate");
  ctx.done();

  validate_report report;
  status outcome = ok();
  {
    mutex_lock lock(mutex_);
    for (auto& b : bufs) {
      outcome = promote_locked(*b, report, deadline, cancel);
      if (!outcome) break;
    }
  }
  ctx.unlock_all();
  if (!outcome) return std::move(outcome).err();
  return report;
}

}  // namespace xbuf
