// SPDX-License-Identifier: MIT
//
// cpu_access.cpp - the CPU as a short-lived importer: begin/end_cpu_access.
//
// Implementation notes
//   - The buffer is pinned (accounting.hpp) for the length of the access so
//     the pointer cannot dangle, then the wait for conflicting work runs
//     without the buffer lock: evictors and other users are not held up, and
//     the pin keeps the memory where it is.
//   - One deadline covers the migration and the wait: the caller's timeout.
#include "allocator/memory_manager.hpp"

#include "allocator/detail/manager_names.hpp"
#include "core/fence_join.hpp"

namespace xbuf {

using detail::buffer_name;
using detail::contents_lost;
using detail::placements_text;

result<pending_cpu_access> memory_manager::start_cpu_access_unguarded(owner_id owner, buffer_id id,
                                                                      cpu_access_mode mode,
                                                                      fence_clock::duration timeout,
                                                                      const cancel_token* cancel) {
  const auto deadline = deadline_after(timeout);
  const std::string what = "begin_cpu_access " + buffer_name(id);
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  auto& buf = locked->buf;
  buf->resv.assert_held();
  mutex_lock lock(mutex_);
  if (buf->lost) return contents_lost(id);
  if (!cpu_reachable(buf->domain)) {
    if (buf->pins > 0) {
      return fail(errc::unsupported, what + ": pinned in VRAM the CPU cannot map");
    }
    const auto targets = reachable_targets(*buf, nullptr);
    if (targets.empty()) {
      return fail(errc::unsupported, what + ": placements " + placements_text(buf->placements) +
                                         " include no memory the CPU can map");
    }
    if (auto s = migrate_locked(*buf, targets, deadline, cancel, "CPU access"); !s) {
      return std::move(s).err();
    }
  }
  accounts_.begin_cpu_access(owner, *buf);
  touch_locked(*buf);
  pending_cpu_access out;
  out.mapping.data = static_cast<char*>(buf->backing.span.block->host_ptr) + buf->backing.span.offset;
  out.mapping.size = buf->size;
  // A reader waits for writers (WRITE), a writer for everything (READ); the
  // KERNEL fences (moves, clears) are in both.
  const auto usage = mode == cpu_access_mode::read ? fence_usage::write : fence_usage::read;
  out.ready = join(buf->resv.fences(usage));
  return out;
}

result<cpu_mapping> memory_manager::begin_cpu_access_unguarded(owner_id owner, buffer_id id,
                                                               cpu_access_mode mode,
                                                               fence_clock::duration timeout,
                                                               const cancel_token* cancel) {
  const auto deadline = deadline_after(timeout);
  auto started = start_cpu_access_unguarded(owner, id, mode, timeout, cancel);
  if (!started) return std::move(started).err();
  // Waited for without the buffer lock, so evictors and other users are not
  // held up; the pin keeps the memory where it is.
  if (auto s = started->ready->wait(time_left(deadline), cancel); !s) {
    (void)end_cpu_access(owner, id);
    return std::move(s).err().prefixed("begin_cpu_access " + buffer_name(id));
  }
  return started->mapping;
}

status memory_manager::end_cpu_access_unguarded(owner_id owner, buffer_id id) {
  auto locked = lock_buffer(owner, id);
  if (!locked) return std::move(locked).err();
  mutex_lock lock(mutex_);
  return accounts_.end_cpu_access(owner, *locked->buf, "end_cpu_access " + buffer_name(id));
}

}  // namespace xbuf
