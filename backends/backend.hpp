// SPDX-License-Identifier: MIT
//
// backend.hpp - the one contract every device backend implements.
//
// Overview
//   A backend owns a set of devices of one kind (sim, cuda, hip) and the host
//   memory those devices can reach. It hands out memory blocks, copies between
//   them asynchronously (each copy returns a fence), exports blocks as file
//   descriptors and answers peer-access queries. It decides nothing about
//   placement: that is the memory manager's job (allocator/).
//
//   The public functions are non-virtual and check their arguments once, here;
//   backends implement the private do_* functions (RMM's pattern), so argument
//   errors read the same for every backend.
//
// Rules
//   - Memory blocks are shared_ptr<const memory_block>; the block's memory is
//     returned to the backend when the last reference goes. Holding a
//     reference is how the memory manager delays a free until fences signal.
//     Dropping a block never fails and never blocks on a fence.
//   - copy() never blocks on its wait_for fences: the copy is queued and
//     starts when they have all signaled (a pipelined move). If one of them
//     signaled with an error the copy is not done and its fence carries that
//     error. The caller keeps both blocks alive until the copy fence signals.
//   - Copy fences are signaled from the backend's own thread without any
//     xbuf lock held (see fence.hpp).
//   - Blocks may outlive the backend that made them (a delayed free can run
//     after it is gone): a block keeps alive what it needs to release its
//     memory. Destroying a backend signals every copy fence it has not yet
//     signaled (-ECANCELED for copies it did not finish); it does not wait for
//     foreign wait_for fences. Do not destroy a backend from one of its own
//     fences' callbacks.
//   - A backend whose runtime or device is missing reports errc::no_device from
//     its factory; nothing here aborts the process.
//   - Every function is thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/fence.hpp"
#include "core/memory_kind.hpp"
#include "core/result.hpp"

namespace xbuf {


struct device_info {
  std::string name;          // "sim0", "NVIDIA H100 80GB HBM3"
  std::string vendor;        // "sim", "nvidia", "amd"
  std::string pci_address;   // "0000:3b:00.0" (lower case, with domain); "" when unknown
  int numa_node = -1;        // -1 when unknown
  std::uint64_t memory_bytes = 0;  // VRAM the device reports
};

// What a backend can do. The memory manager and the conformance tests read it
// instead of asking "is this CUDA?".
struct backend_caps {
  bool export_fd = false;          // export_fd()/import_fd() work for device memory
  bool host_mapped_device = false; // device blocks have a host_ptr (sim)
  bool pinned_host = false;        // allocate_host(pinned=true) page-locks memory
  bool peer_query = false;         // can_access_peer() asks a real runtime
  bool fill = false;               // fill() works (on the device's engine where it has one)
  // export_fd() of a part of a block gives that part pages of its own
  // (memfd ranges, remapped in place); without it the fd reaches the whole
  // block, so the memory manager carves no buffer it may export out of a
  // shared block of that kind. One flag per kind (detaches_ranges() reads
  // them): the sim's VRAM detaches; CUDA's cannot (VRAM gets a block per
  // buffer); a GPU runtime's pinned blocks cannot either, because they are
  // registered with the runtime as a whole and a range remapped under it
  // would leave the GPU on the old pages.
  bool export_detaches_ranges = false;        // device blocks
  bool export_detaches_pinned_ranges = false;  // host_pinned blocks
  bool export_detaches_pageable_ranges = false;  // host_pageable blocks
  std::size_t device_granularity = 4096;  // device allocations are multiples of this
};

// The caps flag above for blocks of `kind`.
constexpr bool detaches_ranges(const backend_caps& c, memory_kind kind) noexcept {
  switch (kind) {
    case memory_kind::device: return c.export_detaches_ranges;
    case memory_kind::host_pinned: return c.export_detaches_pinned_ranges;
    case memory_kind::host_pageable: return c.export_detaches_pageable_ranges;
  }
  return false;
}

// A contiguous piece of memory from a backend. Immutable once made.
struct memory_block {
  memory_kind kind = memory_kind::host_pageable;
  int device = -1;                // device index within its backend; -1 for host memory
  std::size_t size = 0;
  void* host_ptr = nullptr;       // CPU address, when the CPU can reach it directly
  std::uint64_t device_ptr = 0;   // address the device uses (CUdeviceptr; sim: same as host_ptr)
  int fd = -1;                    // memfd / POSIX-fd handle backing it (owned by the block), -1 if none
  int numa_node = -1;             // for host memory: where it was bound, -1 if not bound

  memory_block() = default;
  memory_block(const memory_block&) = delete;
  memory_block& operator=(const memory_block&) = delete;
  virtual ~memory_block() = default;  // backends' blocks release their memory here
};
using memory_block_ptr = std::shared_ptr<const memory_block>;

// A byte range of a block: the operand of copies and exports.
struct memory_span {
  memory_block_ptr block;
  std::size_t offset = 0;
  std::size_t size = 0;
};

// A block exported for another process: a fresh fd (the receiver owns it) and
// where the range lies within what the fd maps.
struct exported_memory {
  int fd = -1;
  std::size_t offset = 0;
  std::size_t size = 0;
  memory_kind kind = memory_kind::host_pageable;
};

class backend {
 public:
  virtual ~backend() = default;
  backend(const backend&) = delete;
  backend& operator=(const backend&) = delete;

  // "sim", "host", "cuda", "hip".
  std::string_view name() const noexcept { return do_name(); }
  const backend_caps& caps() const noexcept { return caps_; }
  // Devices in the backend's own index order. Empty for the host backend.
  std::span<const device_info> devices() const noexcept { return devices_; }

  // The NUMA nodes allocate_host() binds to (OS indexes, ascending): the
  // machine's own (host, GPU runtimes), or a simulated machine's (sim on a
  // topology XML). Empty when the backend cannot tell. The memory manager
  // keeps one pageable heap per node where there are several.
  std::vector<int> host_numa_nodes() const { return do_host_numa_nodes(); }

  // Device memory on `device`.
  // Errors: no_device (index out of range), invalid_argument (0 bytes),
  // out_of_memory (naming the device, the request and what is left), device_lost.
  // Context: may block briefly in the runtime; never waits on a fence.
  result<memory_block_ptr> allocate_device(int device, std::size_t bytes);

  // System memory. pinned: page-locked (and registered with the runtime, if
  // any). numa_node: bind to that node, -1 = no binding.
  // Errors: invalid_argument (0 bytes, unknown node), out_of_memory, unsupported (pinned without caps.pinned_host).
  result<memory_block_ptr> allocate_host(std::size_t bytes, bool pinned, int numa_node = -1);

  // Copies src to dst once every fence in wait_for has signaled. Returns the
  // copy's fence. Errors (returned now, nothing queued): invalid_argument
  // (size mismatch, an empty range, a range outside its block, overlapping
  // ranges of one block, a null block or fence), unsupported (a block this
  // backend cannot reach), device_lost (a device involved is gone).
  // Context: never blocks on the fences; may allocate.
  result<fence_ptr> copy(const memory_span& dst, const memory_span& src,
                         std::span<const fence_ptr> wait_for = {});

  // Sets every byte of dst to `value` once every fence in wait_for has
  // signaled, on the engine that copies (a GPU's copy stream, the sim's DMA
  // engine), so a fill is fenced and ordered like a copy. The memory manager
  // clears memory this way before it reaches a new owner (TTM clears the
  // same way). Returns the fill's fence.
  // Errors (returned now, nothing queued): invalid_argument (as copy's dst,
  // or a null fence), unsupported (no caps.fill, or a block this backend
  // cannot reach), device_lost.
  // Context: never blocks on the fences; may allocate.
  result<fence_ptr> fill(const memory_span& dst, std::uint8_t value,
                         std::span<const fence_ptr> wait_for = {});

  // Exports the span's memory as a new fd for another process (the caller
  // owns it). Where detaches_ranges(caps, kind) the fd reaches the span's
  // pages only (rounded to pages), never other memory of the same block;
  // without it, the whole block's memory (the caller decides whether that
  // is one buffer's). Errors: unsupported (no fd behind this block),
  // io_error.
  result<exported_memory> export_fd(const memory_span& span);

  // The span is free for reuse (its fences have signaled). Where export_fd
  // gave it pages of its own, the block's own pages come back under it, so
  // whoever still holds the exported fd never sees the next user's bytes.
  // The span's old bytes may stay (the sim and host backends keep the pages
  // resident: faulting fresh ones in cost more than clearing), or read as
  // zero (GPU runtimes punch host ranges back to the kernel): the caller
  // clears reused memory before a new owner sees it (heap_allocation::
  // needs_clear). Returns false when that could not be done: the caller must not reuse
  // the range. Context: never throws; may remap memory.
  bool release_range(const memory_span& span) noexcept;

  // Imports memory another process exported. Takes ownership of `fd` on
  // success and on failure (it is closed). device: the local device for
  // device memory, -1 for host memory.
  // Errors: invalid_argument (bad fd, size), unsupported, io_error.
  result<memory_block_ptr> import_fd(const exported_memory& exported, int device);

  // Can `device` access `peer`'s memory directly, per the runtime
  // (cuDeviceCanAccessPeer / hipDeviceCanAccessPeer)? nullopt when the
  // backend cannot tell (sim: the topology decides). Errors: no_device.
  result<std::optional<bool>> can_access_peer(int device, int peer);

  // Number of direct links (NVLink / xGMI) between two devices, when the
  // runtime says; nullopt when unknown. Errors: no_device.
  result<std::optional<int>> link_count(int device, int peer);

 protected:
  backend(backend_caps caps, std::vector<device_info> devices)
      : caps_(caps), devices_(std::move(devices)) {}

  // Called with arguments already checked (see the public functions).
  virtual std::string_view do_name() const noexcept = 0;
  virtual result<memory_block_ptr> do_allocate_device(int device, std::size_t bytes) = 0;
  virtual result<memory_block_ptr> do_allocate_host(std::size_t bytes, bool pinned, int numa_node) = 0;
  virtual result<fence_ptr> do_copy(const memory_span& dst, const memory_span& src,
                                    std::span<const fence_ptr> wait_for) = 0;
  // Optional (caps.fill says whether it is there): default returns unsupported.
  virtual result<fence_ptr> do_fill(const memory_span& dst, std::uint8_t value,
                                    std::span<const fence_ptr> wait_for);
  // Optional: default returns unsupported.
  virtual result<exported_memory> do_export_fd(const memory_span& span);
  // Optional: default true (nothing was detached).
  virtual bool do_release_range(const memory_span&) noexcept { return true; }
  // Optional: default returns unsupported (and closes the fd).
  virtual result<memory_block_ptr> do_import_fd(const exported_memory& exported, int device);
  // Optional: default nullopt (unknown).
  virtual std::optional<bool> do_can_access_peer(int device, int peer);
  // Optional: default nullopt (unknown).
  virtual std::optional<int> do_link_count(int device, int peer);
  // Optional: default empty (unknown).
  virtual std::vector<int> do_host_numa_nodes() const { return {}; }

 private:
  backend_caps caps_;
  std::vector<device_info> devices_;
};

}  // namespace xbuf
