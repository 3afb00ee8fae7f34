// SPDX-License-Identifier: MIT
//
// memfd_block.hpp - (internal) memory blocks backed by a memfd mapping, shared
// by the host, sim and GPU backends.
//
// Overview
//   A memfd_mapping is a memfd (or an imported fd) mapped MAP_SHARED into this
//   process: the memory can be handed to another process as a file descriptor
//   and both see the same pages. A memfd_block is a memory_block that owns one
//   mapping and remembers which backend instance made it (owner), so a backend
//   can refuse blocks that are not its own.
//
// Rules
//   - A block owns its mapping and fd; both are released in its destructor,
//     which never fails and never blocks on a fence.
//   - A block keeps its owner state alive (shared_ptr), so blocks may outlive
//     the backend that made them and owner identity is never reused while a
//     block exists.
//   - on_release runs from the destructor on whatever thread drops the last
//     reference, before the mapping goes: it may update counters under a
//     leaf lock or undo what was done to the pages (the GPU backend
//     unregisters them from its runtime); it must not block on a fence.
//   - NUMA binding (bind_to_node) is mbind(MPOL_BIND) on the shared mapping,
//     through syscall() so that nothing here needs libnuma; it must happen
//     before the first touch, so the pages are born on the node.
#pragma once

#include <cstddef>
#include <functional>
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "backends/backend.hpp"
#include "core/mutex.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf::detail {

// Move-only owner of an fd and its MAP_SHARED mapping.
class memfd_mapping {
 public:
  memfd_mapping() = default;
  memfd_mapping(memfd_mapping&& other) noexcept;
  memfd_mapping& operator=(memfd_mapping&& other) noexcept;
  memfd_mapping(const memfd_mapping&) = delete;
  memfd_mapping& operator=(const memfd_mapping&) = delete;
  ~memfd_mapping();

  // A new memfd named `name` (shows in /proc/<pid>/maps as /memfd:name) of
  // `bytes` bytes rounded up to the page size, mapped read-write. The pages
  // are not touched. Mappings of 2 MiB or more are advised MADV_HUGEPAGE
  // (effective where shmem_enabled allows it). Errors: invalid_argument (0 bytes), out_of_memory
  // (ftruncate or mmap refused the size), io_error.
  // Context: may block in the kernel; allocates.
  static result<memfd_mapping> create(const std::string& name, std::size_t bytes);

  // Maps all of `fd` (taking ownership of it, closed on failure too).
  // Errors: invalid_argument (not an open fd, or nothing to map), io_error.
  static result<memfd_mapping> map_fd(int fd);

  // Binds the whole mapping to NUMA node `node` (MPOL_BIND). Call before
  // touching the pages. Errors: invalid_argument (a node the kernel does not
  // know, naming it), unsupported (no NUMA support in the kernel),
  // out_of_memory, io_error. Context: one system call.
  status bind_to_node(int node);

  void* data() const noexcept { return data_; }
  std::size_t size() const noexcept { return size_; }
  int fd() const noexcept { return fd_; }
  // The node bind_to_node bound the pages to; -1 when not bound.
  int numa_node() const noexcept { return numa_node_; }

 private:
  void release() noexcept;

  int fd_ = -1;
  void* data_ = nullptr;
  std::size_t size_ = 0;
  int numa_node_ = -1;
};

// Unmaps and closes mappings on a thread of its own, so that dropping the
// last reference to a block - often on a copy engine's thread, when a move
// job ends, or under the memory manager's mutex - does not pay for munmap
// and the kernel freeing the pages (tens of microseconds per MiB).
// Started at the first give(); its destructor releases what is still queued
// and joins the thread (it must not run on that thread: the thread touches
// only mappings, never blocks, so nothing it drops can own the reclaimer).
class mapping_reclaimer {
 public:
  mapping_reclaimer() = default;
  ~mapping_reclaimer();
  mapping_reclaimer(const mapping_reclaimer&) = delete;
  mapping_reclaimer& operator=(const mapping_reclaimer&) = delete;

  // Releases `m` later on the reclaimer's thread (at once, here, when the
  // thread cannot start or the queue cannot grow). Never fails or blocks
  // for long; callable from any thread, under any lock (its mutex is a leaf).
  void give(memfd_mapping m) noexcept;
  // Waits until everything given so far is released (tests).
  void drain() noexcept;

 private:
  void run() noexcept;

  mutex mutex_;  // leaf
  std::condition_variable wake_;
  std::condition_variable idle_;
  std::vector<memfd_mapping> queue_ XBUF_GUARDED_BY(mutex_);
  bool busy_ XBUF_GUARDED_BY(mutex_) = false;
  bool stopping_ XBUF_GUARDED_BY(mutex_) = false;
  bool started_ XBUF_GUARDED_BY(mutex_) = false;
  std::thread thread_;
};

struct memfd_block final : memory_block {
  memfd_mapping mapping;
  std::shared_ptr<void> owner;              // the making backend's shared state
  std::function<void(const memfd_block&)> on_release;  // accounting; may be empty
  bool locked = false;                      // mlock'ed (host_pinned that really is page-locked)
  std::size_t charged_bytes = 0;            // what on_release gives back

  // Ranges of an arena given a memfd of their own by export_range (offset
  // in the block -> that memfd and its length); see export_range.
  struct detached_range {
    int fd = -1;
    std::size_t length = 0;
  };
  mutable mutex detach_mutex;  // a leaf
  mutable std::map<std::size_t, detached_range> detached XBUF_GUARDED_BY(detach_mutex);
  // export_block handed out a dup of the block's own fd: somebody may map
  // every page of it for as long as they like, so no page of it may ever
  // hold another buffer (release_range returns false from then on).
  mutable std::atomic<bool> exported_whole{false};
  // Where the mapping goes when the block does (unlocked blocks only: a
  // locked mapping is released at once, so the pinned pages it still
  // holds never count twice against RLIMIT_MEMLOCK); null = at once.
  std::shared_ptr<mapping_reclaimer> reclaimer;

  ~memfd_block() override;
};

// The block behind `p` if it is a memfd_block made by `owner`, else nullptr.
const memfd_block* owned_block(const memory_block_ptr& p, const void* owner) noexcept;

// A fresh (CLOEXEC) fd for `span` of a memfd_block, with the range's offset
// within what the fd maps; the block is marked exported_whole. Errors:
// io_error (dup failed).
result<exported_memory> export_block(const memfd_block& block, const memory_span& span,
                                     std::string_view who);

// One buffer per fd for memory carved from an arena block (a sim GPU's
// VRAM): gives the span's pages - [span.offset, +span.size rounded up to a
// page) - a memfd of their own, copies the bytes there, and maps that memfd
// over the range in place, so this process keeps using the same addresses
// and the exported fd reaches exactly those pages, never a neighbour's.
// The arena's own pages behind the range are released (hole punched). A
// second export of the same range shares the same memfd.
// Preconditions: span.offset page-aligned; no copy or CPU writer of the
// range in flight (the memory manager waits for moves and clears first).
// Errors: invalid_argument (unaligned, or an imported block), io_error.
// Context: allocates, copies the range; takes the block's detach lock.
result<exported_memory> export_range(const memfd_block& block, const memory_span& span,
                                     std::string_view who);

// export_block for a whole block (one buffer's), export_range for a part of
// one (a buffer carved from a VRAM arena or a host chunk). A span counts as
// whole when it touches the block's first page and its last one.
result<exported_memory> export_span(const memfd_block& block, const memory_span& span,
                                    std::string_view who);

// The span's memory may hold another buffer now (its fences have signaled):
// if export_range gave it a memfd, the block's own pages are mapped over it
// again and the block forgets that memfd; its fd holders keep the detached
// pages and their own bytes, and nothing another buffer writes there later
// reaches them. Then, unless keep_pages, the range's pages ([span.offset,
// +span.size rounded up to a page)) go back to the kernel (hole punched):
// they read as zero and cost no memory until the next buffer touches them.
// With keep_pages (the sim and host backends) they stay resident with the
// bytes last written there, so the next buffer does not fault them in
// again; whoever hands the range to a new owner clears or overwrites it
// first (the memory manager's needs_clear, a move's padding fill), which
// needs a backend that can fill that memory.
// Returns false - the range must not be reused - when the range could not
// be restored (a failed remap: it stays detached) or when the block's own
// fd was exported (exported_whole: its receivers map these very pages).
// Context: never fails otherwise; takes the detach lock.
bool release_range(const memfd_block& block, const memory_span& span, bool keep_pages = false) noexcept;

// Maps `exported` (taking ownership of its fd) as a block of kind
// exported.kind on `device`. The imported range must lie within the fd.
// Errors: invalid_argument (bad fd, range beyond the fd's size), io_error.
result<std::shared_ptr<memfd_block>> import_block(const exported_memory& exported, int device,
                                                  std::string_view who);

// The system page size (the granularity of every memfd block).
std::size_t page_size() noexcept;

}  // namespace xbuf::detail
