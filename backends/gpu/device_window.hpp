// SPDX-License-Identifier: MIT
//
// device_window.hpp - a device address range in this process that shows one
// exported VRAM allocation at a time, and keeps its address when it is
// shown another (the client side of DESIGN.md, "Client mappings").
//
// Overview
//   A process that gets VRAM from xbufd gets an fd of a VMM allocation
//   (cuMemCreate / hipMemCreate with the POSIX-fd handle type). open()
//   imports the fd (vmm_import_fd), reserves a virtual range of the
//   device's address space (vmm_reserve), maps the allocation there and
//   grants this device read-write access (vmm_map, vmm_set_access): the
//   address is valid in this process and context, never the daemon's.
//
//   When the buffer moves, the daemon exports its new allocation; show()
//   unmaps the old one from the same range and maps the new one, so a
//   framework's pointer stays valid across the move (CUDA: cuMemUnmap,
//   cuMemMap, cuMemSetAccess on the same reserved range). The old
//   allocation is released once unmapped; its fd holders keep it alive.
//
// Rules
//   - Not locked: its owner (one client view) serializes calls.
//   - The fd in `exported` is consumed by open() and show(), on success and
//     on failure (the handle keeps the memory; the fd is ours to close).
//   - A window never shows more than it reserved: an allocation larger than
//     the range, or one at another offset than the first, is refused
//     (invalid_argument) - the importer is told, never handed an address
//     that points into something else.
//   - After a failed show() the range shows nothing (every address in it
//     faults) until a show() succeeds; the destructor unmaps, releases and
//     frees the range, never fails, and needs no lock.
#pragma once

#include <cstdint>
#include <memory>

#include "backends/backend.hpp"
#include "backends/gpu/gpu_device.hpp"
#include "core/result.hpp"

namespace xbuf::gpu {

class device_window {
 public:
  // Imports `exported` (kind device) on `dev` and maps it in a new range of
  // its size rounded up to the device's granularity.
  // Errors: unsupported (not device memory, or the device has no VMM with
  // POSIX-fd handles), invalid_argument (not an allocation fd), and the
  // runtime's, naming the call.
  static result<std::unique_ptr<device_window>> open(std::shared_ptr<gpu_device> dev,
                                                     const exported_memory& exported);

  // Shows `exported` at the same address instead of what the window shows.
  // Errors: as open(); invalid_argument when it does not fit the range or
  // starts at another offset.
  status show(const exported_memory& exported);

  // Shows nothing any more (unmaps and releases the allocation), keeping
  // the range reserved for a later show(): for a buffer that moved where
  // no window can show it (host memory), so its VRAM is not held here.
  void clear() noexcept;

  // The buffer's first byte in this process's device address space; 0
  // while the window shows nothing.
  std::uint64_t address() const noexcept { return mapped_ ? base_ + offset_ : 0; }
  std::uint64_t reserved_bytes() const noexcept { return bytes_; }

  ~device_window();
  device_window(const device_window&) = delete;
  device_window& operator=(const device_window&) = delete;

 private:
  device_window(std::shared_ptr<gpu_device> dev, device_address base, std::size_t bytes, std::size_t offset)
      : dev_(std::move(dev)), base_(base), bytes_(bytes), offset_(offset) {}
  // Unmaps and releases what the window shows. Current device required.
  void hide() noexcept;

  std::shared_ptr<gpu_device> dev_;
  device_address base_ = 0;
  std::size_t bytes_ = 0;   // reserved
  std::size_t mapped_bytes_ = 0;  // of the range, from its start, now mapped
  std::size_t offset_ = 0;  // the buffer's first byte within the allocation
  vmm_handle handle_{};
  bool mapped_ = false;
};

}  // namespace xbuf::gpu
