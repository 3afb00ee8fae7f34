// SPDX-License-Identifier: MIT
#include "backends/detail/memfd_block.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <algorithm>
#include <cstring>
#include <utility>

#include "core/errno_text.hpp"

namespace xbuf::detail {

namespace {

// MPOL_BIND from <linux/mempolicy.h>; the mask covers nodes 0..1023.
constexpr int mpol_bind = 2;
constexpr int mask_words = 16;
constexpr int bits_per_word = static_cast<int>(sizeof(unsigned long) * CHAR_BIT);
constexpr std::size_t huge_page = std::size_t{2} << 20;  // a PMD on x86-64 and arm64 (4 KiB pages)

}  // namespace

std::size_t page_size() noexcept {
  static const std::size_t size = [] {
    const long p = ::sysconf(_SC_PAGESIZE);
    return p > 0 ? static_cast<std::size_t>(p) : std::size_t{4096};
  }();
  return size;
}

memfd_mapping::memfd_mapping(memfd_mapping&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      numa_node_(std::exchange(other.numa_node_, -1)) {}

memfd_mapping& memfd_mapping::operator=(memfd_mapping&& other) noexcept {
  if (this != &other) {
    release();
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    numa_node_ = std::exchange(other.numa_node_, -1);
  }
  return *this;
}

memfd_mapping::~memfd_mapping() { release(); }

void memfd_mapping::release() noexcept {
  // munmap also drops any mlock on the range.
  if (data_ != nullptr) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  fd_ = -1;
  size_ = 0;
  numa_node_ = -1;
}

result<memfd_mapping> memfd_mapping::create(const std::string& name, std::size_t bytes) {
  const std::size_t page = page_size();
  if (bytes == 0) return fail(errc::invalid_argument, "memfd " + name + ": 0 bytes requested");
  if (bytes > (static_cast<std::size_t>(1) << 62)) {
    return fail(errc::out_of_memory, "memfd " + name + ": " + std::to_string(bytes) +
                                         " bytes is beyond any address space");
  }
  const std::size_t rounded = (bytes + page - 1) / page * page;
  const int fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return fail(errc::io_error, "memfd_create(" + name + ") failed: " + errno_text(e));
  }
  memfd_mapping m;
  m.fd_ = fd;
  if (::ftruncate(fd, static_cast<off_t>(rounded)) != 0) {
    const int e = errno;
    return fail(e == EFBIG || e == ENOSPC || e == ENOMEM ? errc::out_of_memory : errc::io_error,
                "memfd " + name + ": cannot size it to " + std::to_string(rounded) +
                    " bytes: " + errno_text(e));
  }
  void* p = ::mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    return fail(e == ENOMEM ? errc::out_of_memory : errc::io_error,
                "memfd " + name + ": cannot map " + std::to_string(rounded) + " bytes: " + errno_text(e));
  }
  m.data_ = p;
  m.size_ = rounded;
  // Huge pages where the system gives them to shmem: one fault per 2 MiB
  // instead of 512. Only advice - it takes effect where
  // /sys/kernel/mm/transparent_hugepage/shmem_enabled is "advise" (or
  // "within_size"/"always"), and is ignored elsewhere (e.g. "never").
  if (rounded >= huge_page) (void)::madvise(p, rounded, MADV_HUGEPAGE);
  return m;
}

result<memfd_mapping> memfd_mapping::map_fd(int fd) {
  memfd_mapping m;
  m.fd_ = fd;  // owned from here: closed by m on every path
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    return fail(errc::invalid_argument, "fd " + std::to_string(fd) + " cannot be examined: " + errno_text(e));
  }
  if (st.st_size <= 0) {
    return fail(errc::invalid_argument, "fd " + std::to_string(fd) + " has nothing to map (size 0)");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    return fail(e == EACCES || e == ENODEV ? errc::invalid_argument : errc::io_error,
                "fd " + std::to_string(fd) + ": cannot map " + std::to_string(size) +
                    " bytes read-write: " + errno_text(e));
  }
  m.data_ = p;
  m.size_ = size;
  return m;
}

status memfd_mapping::bind_to_node(int node) {
  const std::string what = "cannot bind " + std::to_string(size_) + " bytes to NUMA node " + std::to_string(node);
  if (node < 0 || node >= mask_words * bits_per_word) {
    return fail(errc::invalid_argument, what + ": the node is out of range");
  }
  unsigned long mask[mask_words] = {};
  mask[node / bits_per_word] = 1UL << (node % bits_per_word);
  if (::syscall(SYS_mbind, data_, size_, mpol_bind, mask, mask_words * bits_per_word + 1, 0) != 0) {
    const int e = errno;
    const errc code = e == EINVAL   ? errc::invalid_argument  // no such node
                      : e == ENOSYS || e == EXDEV ? errc::unsupported
                      : e == ENOMEM ? errc::out_of_memory
                                    : errc::io_error;
    return fail(code, what + ": mbind: " + errno_text(e));
  }
  numa_node_ = node;
  return {};
}

const memfd_block* owned_block(const memory_block_ptr& p, const void* owner) noexcept {
  const auto* b = dynamic_cast<const memfd_block*>(p.get());
  return b != nullptr && b->owner.get() == owner ? b : nullptr;
}

result<exported_memory> export_block(const memfd_block& block, const memory_span& span,
                                     std::string_view who) {
  const int fd = ::fcntl(block.mapping.fd(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    const int e = errno;
    return fail(errc::io_error, std::string(who) + ": export_fd: cannot duplicate the " +
                                    std::string(to_string(block.kind)) + " block's fd: " + errno_text(e));
  }
  block.exported_whole.store(true);
  exported_memory out;
  out.fd = fd;
  // An imported block may start inside its mapping; offsets are relative to the fd.
  out.offset = static_cast<std::size_t>(static_cast<const char*>(block.host_ptr) -
                                        static_cast<const char*>(block.mapping.data())) +
               span.offset;
  out.size = span.size;
  out.kind = block.kind;
  return out;
}

memfd_block::~memfd_block() {
  if (on_release) on_release(*this);
  {
    mutex_lock lock(detach_mutex);
    for (auto& [offset, r] : detached) ::close(r.fd);
  }
  if (reclaimer && !locked) reclaimer->give(std::move(mapping));
}

mapping_reclaimer::~mapping_reclaimer() {
  {
    mutex_lock lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  mutex_lock lock(mutex_);
  queue_.clear();
}

void mapping_reclaimer::give(memfd_mapping m) noexcept {
  if (m.data() == nullptr && m.fd() < 0) return;
  try {
    mutex_lock lock(mutex_);
    if (!stopping_) {
      if (!started_) {
        thread_ = std::thread([this] { run(); });
        started_ = true;
      }
      queue_.push_back(std::move(m));
      lock.unlock();
      wake_.notify_one();
      return;
    }
  } catch (...) {
    // No thread or no room to queue: m is released here, on return.
  }
}

void mapping_reclaimer::drain() noexcept {
  mutex_lock lock(mutex_);
  while (!queue_.empty() || busy_) lock.wait(idle_);
}

void mapping_reclaimer::run() noexcept {
  std::vector<memfd_mapping> batch;
  for (;;) {
    {
      mutex_lock lock(mutex_);
      busy_ = false;
      idle_.notify_all();
      while (!stopping_ && queue_.empty()) lock.wait(wake_);
      if (queue_.empty()) return;
      batch.swap(queue_);
      busy_ = true;
    }
    batch.clear();  // munmap + close, no lock held
  }
}

namespace {

std::size_t round_to_page(std::size_t n) {
  const std::size_t page = page_size();
  return (n + page - 1) / page * page;
}

}  // namespace

result<exported_memory> export_range(const memfd_block& block, const memory_span& span,
                                     std::string_view who) {
  const std::string what = std::string(who) + ": export_fd";
  if (block.host_ptr != block.mapping.data() || span.offset % page_size() != 0) {
    return fail(errc::invalid_argument, what + ": range at " + std::to_string(span.offset) +
                                            " of an imported or unaligned block cannot get an fd of its own");
  }
  const std::size_t length = std::min(round_to_page(span.size), block.mapping.size() - span.offset);
  exported_memory out;
  out.offset = 0;
  out.size = span.size;
  out.kind = block.kind;
  mutex_lock lock(block.detach_mutex);
  if (auto it = block.detached.find(span.offset); it != block.detached.end()) {
    out.fd = ::fcntl(it->second.fd, F_DUPFD_CLOEXEC, 0);
    if (out.fd < 0) return fail(errc::io_error, what + ": cannot duplicate the range's fd: " + errno_text(errno));
    return out;
  }
  char* at = static_cast<char*>(block.mapping.data()) + span.offset;
  const int fd = ::memfd_create("xbuf-export", MFD_CLOEXEC);
  if (fd < 0) return fail(errc::io_error, what + ": memfd_create: " + errno_text(errno));
  // Copy, then put the new pages where the old ones were: the same address
  // now shows the memfd that the receiver maps.
  bool ok = ::ftruncate(fd, static_cast<off_t>(length)) == 0;
  for (std::size_t done = 0; ok && done < length;) {
    const ssize_t n = ::pwrite(fd, at + done, length - done, static_cast<off_t>(done));
    ok = n > 0;
    if (ok) done += static_cast<std::size_t>(n);
  }
  ok = ok && ::mmap(at, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0) != MAP_FAILED;
  if (!ok) {
    const int e = errno;
    ::close(fd);
    return fail(errc::io_error, what + ": cannot give " + std::to_string(length) +
                                    " bytes their own memfd: " + errno_text(e));
  }
  // A new mapping is not locked: page-lock it as the block was (the raw
  // syscall, as host_backend.cpp says why).
  if (block.locked) (void)::syscall(SYS_mlock, at, length);
  // The arena's pages behind the range are unused now; give them back.
  (void)::fallocate(block.mapping.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(span.offset), static_cast<off_t>(length));
  block.detached[span.offset] = memfd_block::detached_range{fd, length};
  out.fd = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (out.fd < 0) return fail(errc::io_error, what + ": cannot duplicate the range's fd: " + errno_text(errno));
  return out;
}

result<exported_memory> export_span(const memfd_block& block, const memory_span& span,
                                    std::string_view who) {
  // Whole: the span touches the block's first page and its last one.
  const bool whole = span.offset < page_size() && span.offset + span.size + page_size() > block.size;
  if (whole) return export_block(block, span, who);
  return export_range(block, span, who);
}

bool release_range(const memfd_block& block, const memory_span& span, bool keep_pages) noexcept {
  if (block.exported_whole.load()) return false;
  mutex_lock lock(block.detach_mutex);
  if (auto it = block.detached.find(span.offset); it != block.detached.end()) {
    char* at = static_cast<char*>(block.mapping.data()) + span.offset;
    // The arena's own pages again (export_range punched them: they read as
    // zero): later buffers in this range write there, not into the pages
    // the receivers hold.
    if (::mmap(at, it->second.length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, block.mapping.fd(),
               static_cast<off_t>(span.offset)) == MAP_FAILED) {
      return false;
    }
    if (block.locked) (void)::syscall(SYS_mlock, at, it->second.length);
    ::close(it->second.fd);
    block.detached.erase(it);
  }
  // An imported block's pages are its exporter's to give back.
  if (!keep_pages && block.host_ptr == block.mapping.data() && span.offset < block.mapping.size()) {
    const std::size_t length = std::min(round_to_page(span.size), block.mapping.size() - span.offset);
    (void)::fallocate(block.mapping.fd(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      static_cast<off_t>(span.offset), static_cast<off_t>(length));
  }
  return true;
}

result<std::shared_ptr<memfd_block>> import_block(const exported_memory& exported, int device,
                                                  std::string_view who) {
  auto mapped = memfd_mapping::map_fd(exported.fd);
  if (!mapped) return std::move(mapped).err().prefixed(std::string(who) + ": import_fd");
  memfd_mapping m = std::move(mapped).value();
  if (exported.offset > m.size() || exported.size > m.size() - exported.offset) {
    return fail(errc::invalid_argument,
                std::string(who) + ": import_fd: range [" + std::to_string(exported.offset) + ", +" +
                    std::to_string(exported.size) + ") lies beyond the fd's " +
                    std::to_string(m.size()) + " bytes");
  }
  auto block = std::make_shared<memfd_block>();
  block->kind = exported.kind;
  block->device = device;
  block->size = exported.size;
  block->host_ptr = static_cast<char*>(m.data()) + exported.offset;
  block->device_ptr = exported.kind == memory_kind::device
                          ? reinterpret_cast<std::uint64_t>(block->host_ptr)
                          : 0;
  block->fd = m.fd();
  block->mapping = std::move(m);
  return block;
}

}  // namespace xbuf::detail
