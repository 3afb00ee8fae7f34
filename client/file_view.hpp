// SPDX-License-Identifier: MIT
//
// file_view.hpp - a buffer's exported fd mapped into this process at an
// address that stays put when the buffer's backing changes.
//
// Overview
//   map() reserves a virtual range (PROT_NONE, no memory behind it) for the
//   buffer and maps the fd's bytes over it with MAP_FIXED | MAP_SHARED, so
//   this process and the daemon see the same pages. remap() maps another
//   fd - the buffer's new backing after a move - over the same range: the
//   address a framework holds stays valid and now reaches the new pages.
//   The old pages go when the last mapping and fd of them do (the kernel
//   keeps a memfd alive while either exists).
//
// Rules
//   - Not thread-safe: one owner (an attachment's state, under its lock).
//   - The fd is only used during the call (mmap keeps what it needs); the
//     caller still owns and closes it.
//   - A remap that cannot keep the address (the export's offset within a
//     page differs, or the fd is shorter than the buffer) fails with
//     bad_state naming why and leaves the old mapping in place: the caller
//     is told, never handed a pointer to nothing.
#pragma once

#include <cstddef>
#include <cstdint>

#include "client/remote_client.hpp"
#include "core/result.hpp"

namespace xbuf::client {

class file_view {
 public:
  file_view() = default;
  file_view(file_view&& o) noexcept;
  file_view& operator=(file_view&& o) noexcept;
  file_view(const file_view&) = delete;
  file_view& operator=(const file_view&) = delete;
  ~file_view();

  // Maps `e.size` bytes at `e.offset` of `e.fd`. Errors: invalid_argument
  // (no fd, zero size, the fd shorter than offset + size), out_of_memory
  // (no address space), io_error (mmap refused: errno named).
  static result<file_view> map(const exported_buffer& e);

  // The same address onto `e` (see Rules). Errors: bad_state, io_error.
  status remap(const exported_buffer& e);

  void* data() const noexcept { return data_; }
  std::uint64_t size() const noexcept { return size_; }

 private:
  void release() noexcept;

  void* reserved_ = nullptr;   // page-aligned start of the reservation
  std::size_t reserved_len_ = 0;
  std::size_t in_page_ = 0;    // the export's offset within its first page
  void* data_ = nullptr;       // reserved_ + in_page_
  std::uint64_t size_ = 0;
};

}  // namespace xbuf::client
