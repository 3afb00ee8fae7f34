// SPDX-License-Identifier: MIT
#include "client/file_view.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <utility>

#include "core/errno_text.hpp"

namespace xbuf::client {

namespace {

std::size_t page() noexcept {
  static const std::size_t size = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return size;
}

// Does `e.fd` hold offset + size bytes? A mapping past a file's end faults
// (SIGBUS) on first touch instead of failing here.
status check_covers(const exported_buffer& e, const char* what) {
  struct stat st {};
  if (::fstat(e.fd, &st) != 0) {
    return fail(errc::invalid_argument, std::string(what) + ": fd " + std::to_string(e.fd) + ": " + errno_text(errno));
  }
  const auto length = static_cast<std::uint64_t>(st.st_size);
  if (e.offset > length || e.size > length - e.offset) {
    return fail(errc::invalid_argument, std::string(what) + ": the fd holds " + std::to_string(length) +
                                            " bytes, not " + std::to_string(e.size) + " at offset " +
                                            std::to_string(e.offset));
  }
  return ok();
}

}  // namespace

file_view::file_view(file_view&& o) noexcept
    : reserved_(std::exchange(o.reserved_, nullptr)),
      reserved_len_(std::exchange(o.reserved_len_, 0)),
      in_page_(o.in_page_),
      data_(std::exchange(o.data_, nullptr)),
      size_(std::exchange(o.size_, 0)) {}

file_view& file_view::operator=(file_view&& o) noexcept {
  if (this != &o) {
    release();
    reserved_ = std::exchange(o.reserved_, nullptr);
    reserved_len_ = std::exchange(o.reserved_len_, 0);
    in_page_ = o.in_page_;
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

file_view::~file_view() { release(); }

void file_view::release() noexcept {
  if (reserved_ != nullptr) ::munmap(reserved_, reserved_len_);
  reserved_ = nullptr;
  data_ = nullptr;
}

result<file_view> file_view::map(const exported_buffer& e) {
  if (e.fd < 0) return fail(errc::invalid_argument, "map an export: no fd");
  if (e.size == 0) return fail(errc::invalid_argument, "map an export: zero bytes");
  if (auto s = check_covers(e, "map an export"); !s) return std::move(s).err();
  file_view v;
  v.in_page_ = static_cast<std::size_t>(e.offset % page());
  v.reserved_len_ = (v.in_page_ + static_cast<std::size_t>(e.size) + page() - 1) / page() * page();
  // The reservation: address space only, so a later remap has somewhere
  // to land that nothing else in the process can take meanwhile.
  void* r = ::mmap(nullptr, v.reserved_len_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (r == MAP_FAILED) {
    return fail(errc::out_of_memory, "map an export: reserving " + std::to_string(v.reserved_len_) +
                                         " bytes of address space: " + errno_text(errno));
  }
  v.reserved_ = r;
  v.size_ = e.size;
  v.data_ = static_cast<char*>(r) + v.in_page_;
  if (auto s = v.remap(e); !s) return std::move(s).err();  // v's destructor returns the range
  return v;
}

status file_view::remap(const exported_buffer& e) {
  if (reserved_ == nullptr) return fail(errc::bad_state, "remap: nothing mapped");
  if (e.size != size_) {
    return fail(errc::bad_state, "remap: the new backing has " + std::to_string(e.size) + " bytes, the view " +
                                     std::to_string(size_));
  }
  if (e.offset % page() != in_page_) {
    return fail(errc::bad_state, "remap: the new backing starts " + std::to_string(e.offset % page()) +
                                     " bytes into a page, the view " + std::to_string(in_page_) +
                                     ": the address cannot stay");
  }
  if (auto s = check_covers(e, "remap"); !s) return std::move(s).err();
  const auto file_start = static_cast<off_t>(e.offset - in_page_);
  // MAP_FIXED replaces whatever the range held (the reservation or the old
  // backing) in one step: no moment where the address is unmapped.
  void* m = ::mmap(reserved_, reserved_len_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, e.fd, file_start);
  if (m == MAP_FAILED) return fail(errc::io_error, "remap: mmap of fd " + std::to_string(e.fd) + ": " + errno_text(errno));
  return ok();
}

}  // namespace xbuf::client
