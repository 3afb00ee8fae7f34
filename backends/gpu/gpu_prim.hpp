// SPDX-License-Identifier: MIT
//
// gpu_prim.hpp - the primitives a stream-ordered GPU runtime supplies.
//
// Overview
//   backends/gpu/ is one GPU backend written once: devices, streams, event
//   fences, the poller, deferred submission, copies, export/import and
//   capabilities (gpu_backend.hpp). What differs between CUDA and HIP is only
//   how each step reaches the runtime; that is this contract, as mimalloc's
//   prim.h is for its platforms. cuda/ and hip/ each implement gpu_runtime
//   (cuda_prims.cpp, hip_prims.cpp) and nothing else of the backend.
//
//   The primitives come in groups:
//     devices     device_count, open_device/close_device, query_device,
//                 can_access_peer
//     current     make_current/restore_current (CUDA: push/pop the primary
//                 context; HIP: set the per-thread device and put it back)
//     streams     stream_create/destroy/synchronize, stream_wait_event,
//                 memcpy_async, memset_async
//     events      event_create/record/query/destroy
//     memory      mem_alloc/free, mem_info, host_register/unregister
//     vmm         vmm_granularity, vmm_create/release, vmm_reserve/
//                 free_address, vmm_map/unmap, vmm_set_access,
//                 vmm_export_fd/import_fd
//
// Rules (for every primitive unless it says otherwise)
//   - Errors are values naming the runtime call and its arguments, then the
//     runtime's error name and text: "cuMemCreate(device 1, 2097152 bytes):
//     CUDA_ERROR_OUT_OF_MEMORY (out of memory)". The code is the runtime's
//     mapping (cuda_error.hpp, hip_error.hpp): out_of_memory, no_device,
//     device_lost, unsupported, invalid_argument, io_error, ...
//   - "Current": the primitive needs the device made current on the calling
//     thread by make_current (gpu_device.hpp's device_scope does it). The
//     skeleton never calls such a primitive outside a scope that succeeded.
//   - "VMM": only called for a device whose query_device said vmm, with a
//     runtime that resolved its virtual memory entry points.
//   - Release primitives (…_destroy, …_free, …_release, …_unmap,
//     host_unregister) never fail and never throw: they run in destructors.
//   - Thread-safety: every primitive may be called from any thread at once;
//     an implementation holds no mutable state after construction.
//   - Context: primitives may block briefly inside the runtime; none waits
//     for an xbuf fence or takes an xbuf lock, so they may be called with a
//     device's submit mutex held.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace xbuf::gpu {

// Runtime objects, opaque to the skeleton. Both runtimes' stream and event
// handles are pointers, their device addresses 64-bit integers or pointers,
// their VMM handles 64-bit integers or pointers: each implementation casts.
using stream_t = void*;
using event_t = void*;
using device_address = std::uint64_t;
using vmm_handle = std::uint64_t;

// A device as the runtime knows it. open_device fills native/context.
struct device_ref {
  int ordinal = -1;         // the runtime's device index, also the backend's
  int native = 0;           // CUdevice; HIP: the ordinal again
  void* context = nullptr;  // CUDA: the retained primary context; HIP: unused
};

// What make_current changed, so restore_current can undo exactly that.
struct current_token {
  int previous = -1;   // HIP: the thread's device before the scope, -1 unknown
  bool entered = false;  // make_current succeeded
};

struct device_props {
  std::string name;
  std::uint64_t memory_bytes = 0;
  std::string pci_bus_id;  // as the runtime spells it; "" when it would not say
  int numa_node = -1;      // the runtime's own answer; -1: ask sysfs
  bool unified_addressing = false;  // one address space for host and device pointers
  bool vmm = false;            // VMM allocations possible (and wanted)
  bool vmm_export_fd = false;  // ... with the POSIX-fd handle type
};

struct memory_usage {
  std::size_t free_bytes = 0;
  std::size_t total_bytes = 0;
};

// Constant facts about a runtime, for names and messages.
struct runtime_caps {
  std::string_view name;    // "cuda": backend name; fences are "<name>-event"
  std::string_view title;   // "CUDA": how messages name the backend
  std::string_view vendor;  // device_info::vendor ("nvidia", "amd")
  // Why mem_alloc memory cannot be exported by fd (the export_fd error).
  std::string_view linear_not_exportable;
};

// "device 1, 4096 bytes": how primitives describe the arguments of a call.
inline std::string on_device(const device_ref& d, std::size_t bytes) {
  return "device " + std::to_string(d.ordinal) + ", " + std::to_string(bytes) + " bytes";
}

class gpu_runtime {
 public:
  virtual ~gpu_runtime() = default;
  // Constant for the runtime's lifetime.
  const runtime_caps& caps() const noexcept { return caps_; }

  // --- devices ---
  // Devices the runtime sees (0 is an answer: the skeleton reports it).
  // Errors: any code, naming the call (the factory reports it as no_device).
  virtual result<int> device_count() const = 0;
  // Fills d.native and d.context for ordinal d.ordinal (CUDA retains the
  // primary context). Precondition: 0 <= d.ordinal < device_count().
  virtual status open_device(device_ref& d) const = 0;
  // Undoes open_device. Precondition: open_device(d) succeeded.
  virtual void close_device(const device_ref& d) const noexcept = 0;
  // Name, memory, PCI bus id, NUMA node, unified addressing; vmm and
  // vmm_export_fd only when use_vmm and the runtime has VMM entry points.
  // Precondition: open_device(d) succeeded. Errors name the failing call.
  virtual result<device_props> query_device(const device_ref& d, bool use_vmm) const = 0;
  // May `d` access `peer`'s memory directly? Precondition: both opened, d != peer.
  virtual result<bool> can_access_peer(const device_ref& d, const device_ref& peer) const = 0;

  // --- current device ---
  // Makes d current on this thread, recording in `saved` what to restore.
  // Errors: the push/set call failed (driver shutting down, device lost).
  virtual status make_current(const device_ref& d, current_token& saved) const = 0;
  // Undoes a make_current that succeeded (saved.entered); no-op otherwise.
  virtual void restore_current(const device_ref& d, const current_token& saved) const noexcept = 0;

  // --- streams (Current) ---
  // A non-blocking stream (no implicit sync with the legacy default stream).
  virtual result<stream_t> stream_create(const device_ref& d) const = 0;
  virtual void stream_destroy(stream_t s) const noexcept = 0;
  // Blocks until the stream's work is done; errors are of no use to callers
  // (destructors), so there is none.
  virtual void stream_synchronize(stream_t s) const noexcept = 0;
  // Work queued on `s` after this waits for `e` on the GPU.
  // Precondition: e was recorded (on any stream of this runtime).
  virtual status stream_wait_event(const device_ref& d, stream_t s, event_t e) const = 0;
  // Copies `bytes` from src to dst in stream order. Unified addressing: the
  // runtime tells host from device addresses. Precondition: both ranges stay
  // valid until the work completes.
  virtual status memcpy_async(const device_ref& d, device_address dst, device_address src,
                              std::size_t bytes, stream_t s) const = 0;
  // Sets `bytes` at device memory dst to `value` in stream order (the memory
  // manager clears reused VRAM this way). Precondition: dst is device memory
  // of d and stays valid until the work completes.
  virtual status memset_async(const device_ref& d, device_address dst, std::uint8_t value,
                              std::size_t bytes, stream_t s) const = 0;

  // --- events ---
  // Current. An event without timing (cheaper to record and query).
  virtual result<event_t> event_create(const device_ref& d) const = 0;
  // Current. Records `e` after the work now queued on `s`.
  virtual status event_record(const device_ref& d, event_t e, stream_t s) const = 0;
  // nullopt while the recorded work runs; 0 once done; its failure as a
  // fence errno (-EIO, or -ENODEV for a lost device). Needs no current
  // device; never blocks. Precondition: e was recorded.
  virtual std::optional<int> event_query(event_t e) const noexcept = 0;
  // Current.
  virtual void event_destroy(event_t e) const noexcept = 0;

  // --- memory (Current) ---
  // Linear device memory (not exportable by fd).
  virtual result<device_address> mem_alloc(const device_ref& d, std::size_t bytes) const = 0;
  virtual void mem_free(device_address p) const noexcept = 0;
  // The current device's free and total memory; nullopt if it will not say.
  virtual std::optional<memory_usage> mem_info() const = 0;
  // Page-locks [p, p + bytes) for every device (portable) and maps it for
  // device access. Precondition: page-aligned, not registered yet.
  virtual status host_register(void* p, std::size_t bytes) const = 0;
  virtual void host_unregister(void* p) const noexcept = 0;

  // --- virtual memory management (VMM, Current) ---
  // Minimum allocation granularity for d's VMM allocations.
  virtual result<std::size_t> vmm_granularity(const device_ref& d, bool export_fd) const = 0;
  // Physical memory on d; export_fd asks for the POSIX-fd handle type.
  // Precondition: bytes is a multiple of vmm_granularity.
  virtual result<vmm_handle> vmm_create(const device_ref& d, std::size_t bytes, bool export_fd) const = 0;
  virtual void vmm_release(vmm_handle h) const noexcept = 0;
  // A virtual range of `bytes`, aligned to `alignment`.
  virtual result<device_address> vmm_reserve(const device_ref& d, std::size_t bytes,
                                             std::size_t alignment) const = 0;
  virtual void vmm_free_address(device_address p, std::size_t bytes) const noexcept = 0;
  // Maps `bytes` of h from its offset 0 at p. Precondition: p was reserved.
  virtual status vmm_map(const device_ref& d, device_address p, std::size_t bytes, vmm_handle h) const = 0;
  virtual void vmm_unmap(device_address p, std::size_t bytes) const noexcept = 0;
  // Grants read-write access to [p, p + bytes) for each of `devices`.
  virtual status vmm_set_access(const device_ref& d, device_address p, std::size_t bytes,
                                std::span<const device_ref> devices) const = 0;
  // A new fd for h (the caller owns it). Precondition: h was created with export_fd.
  virtual result<int> vmm_export_fd(const device_ref& d, vmm_handle h) const = 0;
  // The allocation behind an exported fd; the fd stays the caller's.
  virtual result<vmm_handle> vmm_import_fd(const device_ref& d, int fd) const = 0;

 protected:
  explicit gpu_runtime(const runtime_caps& caps) noexcept : caps_(caps) {}
  gpu_runtime(const gpu_runtime&) = delete;
  gpu_runtime& operator=(const gpu_runtime&) = delete;

 private:
  const runtime_caps& caps_;  // static data of the implementation
};

}  // namespace xbuf::gpu
