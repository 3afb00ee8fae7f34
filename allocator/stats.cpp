// SPDX-License-Identifier: MIT
//
// stats.cpp - what the manager holds, for `xbuf stat` and tests.
//
// Implementation notes
//   - Read under the manager mutex alone: every buffer field read here is
//     [const], [mgr], or [both] (written under both locks, so either one
//     suffices to read it; buffer.hpp). Stats never take a buffer's
//     reservation, so they never wait behind a migration.
#include "allocator/memory_manager.hpp"

#include <algorithm>
#include <map>

#include "allocator/detail/manager_names.hpp"

namespace xbuf {

using detail::unknown_buffer;

manager_stats memory_manager::stats() {
  mutex_lock lock(mutex_);
  reap_locked();
  manager_stats s;
  for (const auto& h : heaps_) s.domains.push_back(h->stats());
  auto owners = accounts_.owners();
  buffers_.for_each([&](buffer_id, const std::shared_ptr<buffer>& b) {
    const auto view = b->read_both_unlocked();  // manager mutex held
    if (!b->export_holds.empty() && view.domain >= 0) {
      s.domains[static_cast<std::size_t>(view.domain)].exported_bytes += b->size;
    }
    auto& o = owners[b->owner];
    o.owner = b->owner;
    if (!b->owner_released) {
      o.bytes += b->size;
      o.buffers += 1;
    } else if (!b->export_holds.empty()) {
      o.freed_exported_bytes += b->size;
    } else {
      o.freed_attached_bytes += b->size;
    }
  });
  for (auto& [o, st] : owners) s.owners.push_back(st);
  s.counters = counters_;
  s.counters.failed_moves = failed_moves_->load();
  s.pinned_bytes = accounts_.pinned_bytes();
  s.pinned_limit = accounts_.pinned_limit();
  return s;
}

result<buffer_info> memory_manager::info_unguarded(owner_id owner, buffer_id id) const {
  mutex_lock lock(mutex_);
  auto buf = find_locked(owner, id);
  if (!buf) return unknown_buffer(owner, id);
  buffer_info i;
  i.id = buf->id;
  i.owner = buf->owner;
  i.name = buf->name;
  i.size = buf->size;
  const auto view = buf->read_both_unlocked();  // manager mutex held
  i.where = at(view.domain).where();
  i.attachments = view.attachments;
  i.pins = view.pins;
  for (auto& f : buf->resv.fences()) i.fences += f->is_signaled() ? 0 : 1;
  i.generation = view.generation;
  i.lost = buf->lost;
  return i;
}

std::vector<buffer_info> memory_manager::buffers() const {
  std::vector<std::pair<owner_id, buffer_id>> ids;
  {
    mutex_lock lock(mutex_);
    buffers_.for_each([&](buffer_id id, const std::shared_ptr<buffer>& b) { ids.emplace_back(b->owner, id); });
  }
  // In id order, as callers (xbuf stat, tests) have always seen them.
  std::sort(ids.begin(), ids.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  std::vector<buffer_info> out;
  for (auto [o, id] : ids) {
    if (auto i = info(o, id)) out.push_back(std::move(*i));
  }
  return out;
}

}  // namespace xbuf
