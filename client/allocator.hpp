// SPDX-License-Identifier: MIT
//
// allocator.hpp - libxbuf's one interface: the memory manager in this
// process (embedded) or xbufd through its socket (daemon), the same calls.
//
// Overview
//   A framework asks for buffers, attaches the devices that use them, maps
//   them and marks its use with fences; where the memory manager runs is
//   the connect call's choice:
//
//     auto a = xbuf::client::open_embedded({});            // in-process
//     auto a = xbuf::client::connect_daemon(socket, "job"); // through xbufd
//     auto b = (*a)->alloc({.size = 1 << 20, .placements = {placement::vram(0),
//                                                           placement::pageable()}});
//     auto at = (*a)->attach(*b, -1, attach_mode::dynamic);
//     auto p = (*a)->begin_use(*at, fence_usage::write);  // a pointer valid here
//     ... write through p->data ...
//     (*a)->end_use(*at);
//
//   Ids are the manager's (buffer, attachment, owner). Fences a caller adds
//   or waits for are small numbers meaningful only on this allocator.
//
// Memory a client can use (DESIGN.md "Client mappings")
//   map() and begin_use() return an address valid in this process. For
//   memory the CPU reaches through a file (the sim backend's VRAM, pinned
//   and pageable host memory) the library maps the buffer's exported fd
//   into a virtual range it keeps reserved for the attachment; when the
//   manager moves the buffer (a dynamic attachment's move_notify) the next
//   begin_use waits for the move and maps the same range onto the new
//   backing (MAP_FIXED), so the address stays what it was and the bytes
//   are the moved bytes. Memory that is not a file (CUDA/HIP VRAM) is
//   refused by the daemon client (unsupported, naming what is missing);
//   the embedded allocator returns the manager's own device address, which
//   a move changes (the move callback says so).
//
//   begin_use(attachment, usage) / end_use(attachment) bracket one use: it
//   adds a fence to the buffer (so no move starts until end_use), remaps
//   first where a move happened, and hands out the pointer. Between
//   end_use and the next begin_use the buffer may move; bytes written
//   outside a use may be lost to a move that copied before them.
//
// Rules
//   - Thread-safe: every call may come from any thread. The daemon client
//     has one connection; calls take turns on it (one request in flight),
//     so a slow call (a wait) holds up the others of the same allocator -
//     open one allocator per thread that waits.
//   - Errors are values: the manager's (memory_manager.hpp lists them per
//     call) plus, for the daemon, io_error (connection gone; every later
//     call fails the same way) and protocol_error.
//   - The move callback runs on whichever thread is inside a call or
//     poll_events() when the event arrives; it must not call back into the
//     allocator (it may record, signal, or wake another thread).
//   - Destroying the allocator frees what it held (the daemon does that on
//     disconnect); its mappings are unmapped.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "client/remote_client.hpp"
#include "core/memory_kind.hpp"
#include "core/result.hpp"
#include "server/protocol.hpp"

namespace xbuf::client {

struct alloc_options {
  std::uint64_t size = 0;
  std::vector<placement> placements;  // in order of preference, at least one
  std::string name;                   // shown by stats
  bool cpu_access = false;            // will use cpu_begin
  bool no_evict = false;              // never moved (counts against the pinned limit)
  std::uint64_t alignment = 0;        // 0 = page
};

// What import_fd found.
struct imported {
  buffer_id buffer = 0;
  std::uint64_t size = 0;
  placement where;
};

// An attachment's memory as this process addresses it.
struct mapped_view {
  void* data = nullptr;   // valid in this process until unmap/detach (see Overview)
  std::uint64_t size = 0;
  placement where;        // the domain it is in now
  bool peer = false;      // a GPU reaching another GPU's VRAM
  std::string reason;     // why this path
  std::uint64_t generation = 0;  // the buffer's move count when mapped
};

struct move_event {
  attachment_id attachment = 0;
  buffer_id buffer = 0;
  placement from;
  placement to;
};
using move_callback = std::function<void(const move_event&)>;

// A domain is short of memory: some client's allocation there found no
// room even after eviction (daemon: the memory_pressure event; embedded:
// an allocation of this allocator failed out_of_memory). Give back what
// is held idle (chunk_pool does, when it watches).
struct pressure_event {
  placement where;
  std::uint64_t bytes = 0;  // what the allocation asked for
};
using pressure_callback = std::function<void(const pressure_event&)>;

using fence_handle = std::uint64_t;

struct validate_summary {
  std::uint32_t promoted = 0;
  std::uint32_t deferred = 0;
  std::uint32_t in_place = 0;
  std::uint32_t no_room = 0;
};

// A CPU access's bytes (cpu_begin): valid until cpu_end.
struct cpu_view {
  void* data = nullptr;
  std::uint64_t size = 0;
};

inline constexpr std::chrono::milliseconds default_wait{30'000};

class allocator {
 public:
  virtual ~allocator() = default;

  // "embedded" or "daemon".
  virtual std::string_view mode() const noexcept = 0;
  // Who this allocator is to the manager (share() takes another's).
  virtual owner_id owner() const noexcept = 0;

  virtual result<buffer_id> alloc(const alloc_options& o) = 0;
  // Also detaches this client's own attachments of the buffer (their views
  // unmap); another client's attachment keeps the memory until it
  // detaches. Errors: not_found, bad_state (a use of it is begun).
  virtual status free(buffer_id id) = 0;
  virtual status share(buffer_id id, owner_id with) = 0;
  // The owner's word on when it uses its buffer next, for eviction
  // (allocator/eviction_policy.hpp): done - not for a while (goes first;
  // the next use clears it), keep - last among this owner's buffers, none -
  // its own use history again. Moves nothing. Errors: not_found,
  // permission_denied (shared with this client, not its own).
  virtual status advise(buffer_id id, eviction_hint hint) = 0;
  // A new fd of the buffer's memory (the caller owns it): for another
  // process. Each export holds the buffer until release_export() (or this
  // allocator's end): freed meanwhile, it stays charged to its owner and
  // its memory goes to nobody else. Errors: unsupported where the memory
  // is not a file.
  virtual result<exported_buffer> export_fd(buffer_id id) = 0;
  // This client, and everyone it passed the fd on to, is done with one fd
  // export_fd() gave it for `id`. Errors: not_found (no such export held).
  virtual status release_export(buffer_id id) = 0;
  // The buffer an exported fd reaches (one another client passed on, over
  // a socket of their own), usable from now on as if shared with this
  // client: attach, map, fences. Holding the fd is the right to it, as with
  // dma-buf. The fd is only looked at; the caller still owns it.
  // Errors: invalid_argument (not a memory fd), not_found (no export of
  // this manager or daemon, or its buffer moved since: export again),
  // bad_state (its owner freed it).
  virtual result<imported> import_fd(int fd) = 0;

  virtual result<attachment_id> attach(buffer_id id, int device, attach_mode mode, bool peer_capable = false) = 0;
  // Unmaps this process's view too.
  virtual status detach(attachment_id id) = 0;
  // Maps the attachment here (see Overview) and waits, up to `timeout`,
  // for a move or clear still running. Errors: the manager's map errors,
  // unsupported (memory this mode cannot map into the process), timed_out.
  virtual result<mapped_view> map(attachment_id id, std::chrono::milliseconds timeout = default_wait) = 0;
  virtual status unmap(attachment_id id) = 0;

  // Fences: added to a buffer by this client, signaled by it (a job's "I
  // use it until..."). deadline 0 = the manager's longest.
  virtual result<fence_handle> add_fence(buffer_id id, fence_usage usage,
                                         std::chrono::milliseconds deadline = std::chrono::milliseconds(0)) = 0;
  virtual status signal_fence(fence_handle f, int error = 0) = 0;
  // ok = signaled, with the fence's error (0 or -errno). Errors: timed_out,
  // not_found.
  virtual result<int> wait(fence_handle f, std::chrono::milliseconds timeout) = 0;

  // One use of a mapped attachment (see Overview): the pointer, valid until
  // end_use. Errors: as map, plus bad_state (a use already begun on it).
  virtual result<mapped_view> begin_use(attachment_id id, fence_usage usage,
                                        std::chrono::milliseconds timeout = default_wait) = 0;
  // Ends it; `error` (0 or -errno) is what the use's fence reports.
  // Errors: bad_state (no use begun).
  virtual status end_use(attachment_id id, int error = 0) = 0;

  virtual result<validate_summary> validate(std::span<const buffer_id> ids) = 0;
  virtual result<cpu_view> cpu_begin(buffer_id id, bool write,
                                     std::chrono::milliseconds timeout = default_wait) = 0;
  virtual status cpu_end(buffer_id id) = 0;

  // What this client may see (the daemon's tenant view; all of it in
  // embedded mode, where this process is the operator).
  virtual result<wire::stats_reply> stats() = 0;

  // The move callback (one; a new one replaces the old).
  virtual void on_move(move_callback cb) = 0;
  // The memory-pressure callback (one; a new one replaces the old). Runs
  // like the move callback (see Rules).
  virtual void on_memory_pressure(pressure_callback cb) = 0;
  // Reads events for up to `timeout` (0 = what has arrived) and runs the
  // callback for each. Returns how many. Embedded: events run at once, so
  // this returns 0.
  virtual result<std::size_t> poll_events(std::chrono::milliseconds timeout) = 0;
};

// The memory manager in this process.
struct embedded_options {
  std::string backend = "auto";        // "auto", "sim", "cuda", "hip"
  int sim_devices = 2;                 // sim backend: GPUs
  std::uint64_t sim_vram = 256 << 20;  // sim backend: VRAM per GPU
  std::uint64_t pinned = 64 << 20;     // pinned host memory (also the pinned limit)
  std::uint64_t pageable = 1ull << 30; // pageable host memory
  std::chrono::milliseconds promote_interval{100};
};
// Errors: invalid_argument (unknown backend name), the backend's (no_device
// for an explicit GPU backend that cannot run here), out_of_memory.
result<std::unique_ptr<allocator>> open_embedded(const embedded_options& o);

// xbufd through its socket. Empty path: $XBUF_SOCKET, else the default.
// server_uid: trusted besides root and our own (else $XBUF_SERVER_UID).
// Errors: as remote_client::connect.
result<std::unique_ptr<allocator>> connect_daemon(const std::string& socket_path, const std::string& client_name,
                                                  std::optional<std::uint32_t> server_uid = std::nullopt);

}  // namespace xbuf::client
