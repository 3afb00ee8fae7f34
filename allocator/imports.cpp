// SPDX-License-Identifier: MIT
//
// imports.cpp - memory_manager::import_fd: from an exported fd back to its
// buffer (dma-buf's import), the table of exports it looks in, and the
// release of an export's hold.
//
// An export's memory file is named by its inode: every fd of one memfd -
// the export's dup, what a client passed on - has the same (st_dev,
// st_ino). A buffer that moves gets new memory; the fds of its old memory
// reach pages that are no longer the buffer, so a record carries the
// generation it was made at and an import of an older one is refused.
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <string>

#include "allocator/detail/manager_names.hpp"
#include "allocator/memory_manager.hpp"
#include "core/errno_text.hpp"

namespace xbuf {

using detail::buffer_name;

void memory_manager::record_export_locked(buffer& buf, const exported_memory& e) {
  struct stat st {};
  if (::fstat(e.fd, &st) != 0) return;  // the fd works; it only cannot be imported back
  const std::pair<std::uint64_t, std::uint64_t> key{static_cast<std::uint64_t>(st.st_dev),
                                                    static_cast<std::uint64_t>(st.st_ino)};
  const std::uint64_t generation = buf.read_both_unlocked().generation;
  // Older generations' files are no longer this buffer's memory. (A key
  // may name another buffer's record by now: a freed memfd's inode number
  // is reused. That record is left alone.)
  // (A plain loop: -Wthread-safety does not see mutex_ held inside a lambda.)
  for (auto k = buf.export_keys.begin(); k != buf.export_keys.end();) {
    auto it = exports_.find(*k);
    if (it != exports_.end() && it->second.id == buf.id && it->second.generation == generation) {
      ++k;
      continue;
    }
    if (it != exports_.end() && it->second.id == buf.id) exports_.erase(it);
    k = buf.export_keys.erase(k);
  }
  exports_[key] = export_record{.id = buf.id, .generation = generation};
  if (std::find(buf.export_keys.begin(), buf.export_keys.end(), key) == buf.export_keys.end()) {
    buf.export_keys.push_back(key);
  }
}

result<imported_buffer> memory_manager::import_fd_unguarded(owner_id importer, int fd) {
  const std::string what = "import fd " + std::to_string(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(errc::invalid_argument, what + ": " + errno_text(errno));
  if (!S_ISREG(st.st_mode)) {
    return fail(errc::invalid_argument, what + ": not a memory file (an fd xbuf exported is a memfd)");
  }
  mutex_lock lock(mutex_);
  auto rec = exports_.find({static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)});
  if (rec == exports_.end()) {
    return fail(errc::not_found, what + ": not memory this allocator exported (or its buffer is gone)");
  }
  const auto* found = buffers_.find(rec->second.id);
  if (found == nullptr) return fail(errc::not_found, what + ": its " + buffer_name(rec->second.id) + " is gone");
  buffer& buf = **found;
  const auto view = buf.read_both_unlocked();
  if (view.generation != rec->second.generation) {
    return fail(errc::not_found, what + ": " + buffer_name(buf.id) +
                                     " moved since this fd was exported; the fd reaches its old pages (export it again)");
  }
  if (buf.owner_released) return fail(errc::bad_state, what + ": " + buffer_name(buf.id) + " was freed by its owner");
  if (importer != buf.owner) buf.shared_with.insert(importer);
  return imported_buffer{.id = buf.id, .owner = buf.owner, .size = buf.size, .where = at(view.domain).where()};
}

status memory_manager::release_export_unguarded(owner_id receiver, buffer_id id) {
  const auto none = [&] {
    return fail(errc::not_found, "release " + buffer_name(id) + ": owner " + std::to_string(receiver) +
                                     " holds no unreleased export of it");
  };
  // The reservation first, as for every change of a buffer's life: the
  // last hold of a freed buffer destroys it.
  auto locked = lock_buffer(receiver, id);
  if (!locked) return locked.code() == errc::not_found ? none() : std::move(locked).err();
  auto& buf = locked->buf;
  buf->resv.assert_held();
  mutex_lock lock(mutex_);
  auto h = buf->export_holds.find(receiver);
  if (h == buf->export_holds.end()) return none();
  if (--h->second == 0) buf->export_holds.erase(h);
  destroy_if_unreachable_locked(*buf);
  return ok();
}

}  // namespace xbuf
