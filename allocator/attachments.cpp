// SPDX-License-Identifier: MIT
//
// attachments.cpp - importers' claims on buffers: attach, detach, map, unmap,
// and a buffer's end once neither its owner nor an importer holds it.
//
// Implementation notes
//   - A pinned attachment is charged (accounting.hpp) before the buffer
//     migrates to where the importer reaches it, and refunded if that fails:
//     the check and the charge are one step even though migrating may drop
//     the manager mutex.
//   - Migration targets come from reachable_targets(), shared with map() and
//     CPU access; pinned host memory, which every device and the CPU reach,
//     is the last resort.
#include "allocator/memory_manager.hpp"

#include <algorithm>

#include "allocator/detail/manager_names.hpp"
#include "core/fence_join.hpp"

namespace xbuf {

using detail::attachment_name;
using detail::buffer_name;
using detail::contents_lost;

namespace {

std::string importer_name(int device) {
  return device < 0 ? std::string("the CPU") : "device " + std::to_string(device);
}

void append_unique(std::vector<int>& domains, int d) {
  if (d >= 0 && std::find(domains.begin(), domains.end(), d) == domains.end()) domains.push_back(d);
}

}  // namespace

result<attachment_id> memory_manager::attach_unguarded(owner_id owner, buffer_id id, const attach_request& req,
                                             const cancel_token* cancel) {
  const auto deadline = deadline_after(req.timeout);
  const auto device_count = static_cast<int>(backend_.devices().size());
  if (req.device < -1 || req.device >= device_count) {
    return fail(errc::invalid_argument, "attach " + buffer_name(id) + ": device " +
                                            std::to_string(req.device) + " does not exist (" +
                                            std::to_string(device_count) + " devices)");
  }
  if (req.mode == attach_mode::dynamic && !req.move_notify) {
    return fail(errc::invalid_argument,
                "attach " + buffer_name(id) + ": a dynamic attachment needs move_notify");
  }
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = *locked->buf;
  buf.resv.assert_held();
  mutex_lock lock(mutex_);
  if (buf.owner_released) return fail(errc::bad_state, buffer_name(id) + ": already freed");

  auto att = std::make_shared<attachment>(attachment{next_attachment_id_++, owner, req.device,
                                                     req.mode, req.peer_capable, req.move_notify});
  if (req.mode == attach_mode::pinned) {
    const std::string what = "attach " + buffer_name(id);
    std::string reason;
    bool peer = false;
    const bool reached = reachable(*att, buf.domain, &reason, &peer);
    if (!reached && buf.pins > 0) {
      return fail(errc::unsupported, what + ": pinned in " + at(buf.domain).name() + ", which " +
                                         importer_name(req.device) + " cannot reach (" + reason + ")");
    }
    if (auto s = accounts_.pin_attachment(buf, what); !s) return std::move(s).err();
    if (!reached) {
      auto targets = reachable_targets(buf, att.get());
      if (targets.empty()) targets.push_back(domain_of(placement::pinned()));
      if (auto s = migrate_locked(buf, targets, deadline, cancel,
                                  "pin for device " + std::to_string(req.device));
          !s) {
        accounts_.unpin_attachment(buf);
        return std::move(s).err();
      }
    }
  }
  buf.attachments.push_back(att);
  attachment_index_[att->id] = att;
  attachment_buffer_[att->id] = buf.id;
  return att->id;
}

status memory_manager::detach_unguarded(owner_id owner, attachment_id id) {
  auto locked = lock_attachment(owner, id);
  if (!locked) return std::move(locked).err();
  auto& [buf, att, resv] = *locked;
  buf->resv.assert_held();
  mutex_lock lock(mutex_);
  std::erase(buf->attachments, att);
  attachment_index_.erase(id);
  attachment_buffer_.erase(id);
  if (att->mode == attach_mode::pinned) accounts_.unpin_attachment(*buf);
  destroy_if_unreachable_locked(*buf);
  return ok();
}

mapping memory_manager::make_mapping_locked(const buffer& buf, const attachment& att) const {
  buf.resv.assert_held();
  mapping m;
  m.where = at(buf.domain).where();
  const auto& span = buf.backing.span;
  const std::uint64_t base = att.device < 0
                                 ? reinterpret_cast<std::uint64_t>(span.block->host_ptr)
                                 : span.block->device_ptr;
  m.ranges.push_back({base + span.offset, buf.size});
  (void)reachable(att, buf.domain, &m.reason, &m.peer);
  m.wait_for = join(buf.resv.fences(fence_usage::kernel));
  m.generation = buf.generation;
  return m;
}

result<mapping> memory_manager::map_unguarded(owner_id owner, attachment_id id, const cancel_token* cancel,
                                    fence_clock::duration timeout) {
  const auto deadline = deadline_after(timeout);
  auto locked = lock_attachment(owner, id);
  if (!locked) return std::move(locked).err();
  auto& [buf, att, resv] = *locked;
  buf->resv.assert_held();
  mutex_lock lock(mutex_);
  if (buf->lost) return contents_lost(buf->id);
  std::string reason;
  bool peer = false;
  if (!reachable(*att, buf->domain, &reason, &peer)) {
    const std::string where = at(buf->domain).name();
    if (buf->pins > 0) {
      return fail(errc::unsupported, "map " + attachment_name(id) + ": " + buffer_name(buf->id) +
                                         " is pinned in " + where + ", which " +
                                         importer_name(att->device) + " cannot reach (" + reason + ")");
    }
    // Migrate to a placement the importer reaches, else to pinned host
    // memory, which every device and the CPU reach.
    auto targets = reachable_targets(*buf, att.get());
    append_unique(targets, domain_of(placement::pinned()));
    if (auto s = migrate_locked(*buf, targets, deadline, cancel,
                                "map for " + attachment_name(id) + " (" + reason + " in " + where + ")");
        !s) {
      return std::move(s).err();
    }
  }
  touch_locked(*buf);
  att->mapped = true;
  att->mapped_generation = buf->generation;
  return make_mapping_locked(*buf, *att);
}

status memory_manager::unmap_unguarded(owner_id owner, attachment_id id) {
  auto locked = lock_attachment(owner, id);
  if (!locked) return std::move(locked).err();
  auto& att = locked->att;
  if (!att->mapped) return fail(errc::bad_state, "unmap " + attachment_name(id) + ": not mapped");
  att->mapped = false;
  return ok();
}

void memory_manager::destroy_if_unreachable_locked(buffer& buf) {
  buf.resv.assert_held();  // as destroy_locked: every caller holds the buffer's reservation
  if (buf.owner_released && buf.attachments.empty() && buf.export_holds.empty()) destroy_locked(buf);
}

void memory_manager::destroy_locked(buffer& buf) {
  buf.resv.assert_held();
  auto& h = at(buf.domain);
  h.lru().erase(buf.lru_pos);
  if (h.release(std::move(buf.backing), buf.resv.fences(fence_usage::bookkeep))) {
    ++counters_.delayed_frees;
  }
  accounts_.destroyed(buf);
  accounts_.removed(buf, buf.domain);
  buf.destroyed = true;
  for (const auto& key : buf.export_keys) {
    // Only its own: an inode number of a freed file may name another's by now.
    if (auto it = exports_.find(key); it != exports_.end() && it->second.id == buf.id) exports_.erase(it);
  }
  ++counters_.frees;
  events_.record({.kind = memory_event_kind::free, .owner = buf.owner, .buffer = buf.id, .bytes = buf.size,
                  .from = buf.domain});
  buffers_.erase(buf.id);
}

}  // namespace xbuf
