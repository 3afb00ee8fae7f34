// SPDX-License-Identifier: MIT
//
// memory_manager.hpp - where buffers live, and moving them safely (TTM analog).
//
// Overview
//   The memory manager owns one heap per domain (each GPU's VRAM, pinned
//   host, pageable host) and every buffer in them. It
//     - places a new buffer in the first of its placements with room, and
//       when the preferred domain is full, evicts: takes candidates in the
//       order of eviction_policy.hpp (predicted next use farthest first;
//       LRU order without a periodic history), skips pinned buffers, trylocks each victim (skips contended ones),
//       takes idle victims before busy ones, and moves busy ones pipelined -
//       the copy waits for the victim's fences and its fence becomes the
//       victim's KERNEL fence (move_job.hpp);
//     - frees old memory only after every fence on it signaled (heap.hpp);
//     - hands importers addresses they can reach: their own VRAM, another
//       GPU's VRAM when the peer policy allows and the importer takes peer
//       addresses, else pinned host memory both can reach (the buffer
//       migrates); never an address the importer cannot reach;
//     - tells dynamic importers before a move (move_notify); pinned importers
//       keep the buffer where it is;
//     - promotes evicted buffers back with validate(), at most once per
//       promote_interval per buffer (no ping-pong);
//     - enforces budgets: domain capacity, a quota per owner, a cap on pinned
//       bytes; a failure names the domain, the request and the largest holders.
//
//   Users see numbers: owner ids (a client of the daemon, a framework
//   in-process), buffer ids and attachment ids. An id that belongs to another
//   owner reads as unknown (errc::not_found), so no client learns of another's
//   buffers; a buffer shared with share() is visible to that owner too.
//
//   Lifetime: free() drops the owner's handle. The buffer lives on while
//   importers are attached (as a dma-buf lives while an fd is open) and its
//   memory after that until its fences signaled.
//
// Rules
//   - Lock order: reservation locks (any order, through an acquire context)
//     -> manager mutex -> fence lock (leaf). The manager takes a buffer's
//     reservation lock before its own mutex; under its mutex it only
//     *trylocks* reservations (eviction). It never waits on a fence while
//     holding its mutex: it drops the mutex, waits, and tries again.
//   - Fence callbacks and move_notify must never take the manager mutex:
//     eviction tests fences with it held (a polled fence may signal there and
//     run its callbacks), and move_notify is called with it held. The
//     manager's own callbacks (move jobs) only signal fences and set atomics.
//   - Every public function is thread-safe and may block (on buffer locks,
//     and where it says so on fences) unless it says otherwise: never call
//     them on an io_context thread or from a fence callback or move_notify.
//   - Errors are values; no function throws: every call that returns a
//     result stands behind guarded() (core/guarded.hpp), so even running out
//     of process memory is an error value (out_of_memory). free/detach/unmap
//     report bad ids but never fail otherwise.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "allocator/accounting.hpp"
#include "allocator/buffer.hpp"
#include "allocator/buffer_index.hpp"
#include "allocator/deadline_watchdog.hpp"
#include "allocator/domain.hpp"
#include "allocator/event_log.hpp"
#include "allocator/heap.hpp"
#include "backends/backend.hpp"
#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/reservation.hpp"
#include "core/result.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

// The peer-to-peer verdict the manager asks for before handing device
// `importer` an address in device `exporter`'s VRAM (p2p/peer_policy.hpp
// supplies the real one from the PCI topology).
struct peer_decision {
  bool allowed = false;
  std::string reason;  // "bus_addr: both below PCIe switch 0000:2c:00.0", ...
};
using peer_policy_fn = std::function<peer_decision(int importer, int exporter)>;

struct manager_config {
  backend* device_backend = nullptr;  // not owned; must outlive the manager
  // VRAM each GPU lends to the manager; 0 = all the device reports. One
  // entry per device, or empty for all-zero.
  std::vector<std::uint64_t> vram_capacity;
  std::uint64_t pinned_capacity = 256ull << 20;    // pinned host domain
  // Pageable host memory, split evenly between the NUMA nodes where the
  // backend reports several (one heap each, domain.hpp).
  std::uint64_t pageable_capacity = 1024ull << 20;
  std::uint64_t pinned_limit = 256ull << 20;  // bytes held still by pinned attachments / no_evict
  std::uint64_t domain_quota = 0;             // bytes one owner may place in one domain; 0 = no limit
  std::size_t max_buffers_per_owner = 0;      // buffers one owner may hold; 0 = no limit
  std::uint64_t min_block = 4096;             // VRAM chunk (buddy order 0)
  std::chrono::steady_clock::duration promote_interval = std::chrono::milliseconds(100);
  int move_retries = 3;                       // copies tried again before contents are lost
  peer_policy_fn peer_policy;                 // default: the backend's can_access_peer
};

// How long a call that may move a buffer waits for evictions by default.
inline constexpr fence_clock::duration default_move_timeout = std::chrono::seconds(30);

struct alloc_request {
  std::uint64_t size = 0;
  std::uint64_t alignment = 0;          // 0 = page; else a power of two <= 1 GiB
  std::vector<placement> placements;    // in order of preference, at least one
  bool cpu_access = false;              // will be accessed with begin_cpu_access
  bool no_evict = false;                // never moved (counts against pinned_limit)
  std::string name;                     // shown by stats; optional
  fence_clock::duration timeout = default_move_timeout;  // for waits on evictions
  const cancel_token* cancel = nullptr;
  // The caller waits for evictions itself and calls again (xbufd's
  // sessions, which never wait on a thread; with a zero timeout). Out of
  // time, the request then fails with timed_out, as the caller expects,
  // instead of taking a later placement while the room its evictions make
  // in the preferred one is on its way: the next call finds that room.
  bool caller_retries = false;
};

struct attach_request {
  int device = -1;              // importing device; -1 = the CPU
  attach_mode mode = attach_mode::dynamic;
  bool peer_capable = false;    // the importer can use another GPU's VRAM address
  move_notify_fn move_notify;   // required for dynamic, ignored for pinned
  fence_clock::duration timeout = default_move_timeout;  // a pin that must move the buffer
};

struct address_range {
  std::uint64_t address = 0;  // valid for the importer: device address, or host pointer for the CPU
  std::uint64_t size = 0;
};

struct mapping {
  placement where;                   // the domain the addresses point into
  std::vector<address_range> ranges;
  bool peer = false;                 // an address in another GPU's VRAM
  std::string reason;                // why this path (peer verdict, or why host)
  fence_ptr wait_for;                // do not touch the memory before this signals
  std::uint64_t generation = 0;      // the buffer's move count at map time
};

enum class cpu_access_mode : std::uint8_t { read, write };

struct cpu_mapping {
  void* data = nullptr;
  std::uint64_t size = 0;
};

// A CPU access begun without waiting (start_cpu_access): the buffer is held
// still already; `ready` signals once the work the access must not race
// with is done (a signaled stub when there is none).
struct pending_cpu_access {
  cpu_mapping mapping;
  fence_ptr ready;
};

// What import_fd() found.
struct imported_buffer {
  buffer_id id = 0;
  owner_id owner = 0;
  std::uint64_t size = 0;
  placement where;
};

struct buffer_info {
  buffer_id id = 0;
  owner_id owner = 0;
  std::string name;
  std::uint64_t size = 0;
  placement where;
  std::size_t attachments = 0;
  int pins = 0;
  std::size_t fences = 0;           // unsignaled fences in its reservation
  std::uint64_t generation = 0;
  bool lost = false;
};

struct manager_counters {
  std::uint64_t allocations = 0;
  std::uint64_t frees = 0;
  std::uint64_t evictions = 0;
  std::uint64_t moves = 0;            // every move: evictions, promotions, migrations
  std::uint64_t bytes_moved = 0;
  std::uint64_t move_notifies = 0;
  std::uint64_t delayed_frees = 0;    // memory releases that had to wait for fences
  std::uint64_t failed_moves = 0;     // moves whose every copy failed (contents lost)
  std::uint64_t promotions = 0;
  std::uint64_t promotions_deferred = 0;  // skipped by the anti ping-pong interval
  std::uint64_t allocation_failures = 0;
  std::uint64_t clears = 0;           // new buffers zeroed before their first use
  std::uint64_t bytes_cleared = 0;
};

struct manager_stats {
  std::vector<domain_stats> domains;
  std::vector<owner_stats> owners;
  manager_counters counters;
  std::uint64_t pinned_bytes = 0;
  std::uint64_t pinned_limit = 0;
};

struct validate_report {
  std::size_t promoted = 0;   // moved back to their preferred placement
  std::size_t deferred = 0;   // evicted, but promoted too recently
  std::size_t in_place = 0;   // already where they prefer
  std::size_t no_room = 0;    // could not be promoted now (no room even after eviction)
};

class memory_manager {
 public:
  // Creates the heaps: one VRAM heap per device of the backend (taking its
  // arena from the backend now), a pinned host heap, and a pageable host
  // heap - one per NUMA node where backend::host_numa_nodes() lists several.
  // Errors: invalid_argument (no backend, capacities, min_block), and the
  // backend's errors for the arenas (naming the device).
  static result<std::unique_ptr<memory_manager>> create(manager_config config);

  // Waits for every pending move and delayed free, then frees everything.
  // Context: blocks on fences.
  ~memory_manager();
  memory_manager(const memory_manager&) = delete;
  memory_manager& operator=(const memory_manager&) = delete;

  // A new buffer of `req.size` bytes for `owner`, in the first placement
  // with room, evicting others from a full domain on the way. It fails only
  // when no allowed placement has room within `req.timeout`: when the room
  // that evictions give back keeps going to other threads, or time runs
  // out, it takes any allowed placement with room now (validate() promotes
  // the buffer later).
  // Errors: invalid_argument (0 or absurd size, bad alignment, no or unknown
  // placement), quota_exceeded (owner quota; pinned_limit for no_evict),
  // out_of_memory (names each domain tried, the request and the largest
  // holders), timed_out / cancelled (waiting for evictions).
  // Context: blocks on buffer locks and, when evicting, on move fences.
  result<buffer_id> allocate(owner_id owner, const alloc_request& req);

  // Drops the owner's handle (see Lifetime). Errors: not_found (unknown or
  // another owner's id), bad_state (already freed but still attached).
  status free(owner_id owner, buffer_id id);

  // Lets `with` attach to the buffer and add fences to it.
  // Errors: not_found, bad_state (already freed).
  status share(owner_id owner, buffer_id id, owner_id with);

  // Attaches an importer. A pinned attachment moves the buffer first, if
  // needed, to where the importer can reach it, and pins it there.
  // Errors: not_found, invalid_argument (unknown device; dynamic without
  // move_notify), bad_state (freed), quota_exceeded (pinned_limit),
  // unsupported (pinned by another importer where this one cannot reach),
  // out_of_memory / timed_out / cancelled (when it had to move).
  // Context: blocks on the buffer lock; may wait for evictions.
  result<attachment_id> attach(owner_id owner, buffer_id id, const attach_request& req,
                               const cancel_token* cancel = nullptr);

  // Drops an attachment (unpins a pinned one). Errors: not_found (unknown,
  // another owner's, or already detached).
  status detach(owner_id owner, attachment_id id);

  // Addresses valid for the importer, plus the fence to wait for before
  // using them. Migrates the buffer when the importer cannot reach where it
  // is (see Overview). Errors: not_found (no such attachment: map without
  // attach), unsupported (pinned where the importer cannot reach),
  // device_lost (a move failed and the contents are gone), out_of_memory /
  // timed_out / cancelled (migrating).
  // `timeout` bounds the wait for room when the buffer must migrate.
  result<mapping> map(owner_id owner, attachment_id id, const cancel_token* cancel = nullptr,
                      fence_clock::duration timeout = default_move_timeout);

  // Errors: not_found, bad_state (not mapped).
  status unmap(owner_id owner, attachment_id id);

  // Adds a fence to the buffer's reservation (a job's "I am using this
  // buffer"). With a deadline, the manager signals it with -ETIMEDOUT when
  // the deadline passes, so no client stalls eviction forever.
  // Errors: not_found, invalid_argument (null fence), out_of_memory.
  status add_fence(owner_id owner, buffer_id id, fence_ptr f, fence_usage usage,
                   std::optional<fence_clock::time_point> deadline = std::nullopt);

  // Moves evicted buffers back to their preferred placement (before a job
  // uses them), each at most once per promote_interval. Locks all of them
  // in one acquire context, so any order is fine.
  // `timeout` bounds the waits for room (the locks wait as long as `cancel` allows).
  // Errors: not_found (any id; nothing is done), cancelled, timed_out.
  result<validate_report> validate(owner_id owner, std::span<const buffer_id> ids,
                                   const cancel_token* cancel = nullptr,
                                   fence_clock::duration timeout = default_move_timeout);

  // A framework's word on when it uses the buffer next, for eviction
  // (allocator/eviction_policy.hpp): `done` - not for a while (evicted
  // before anything unhinted; the buffer's next use clears it), `keep` -
  // evicted only after every unhinted buffer, `none` - back to the
  // buffer's own use history. Moves nothing by itself. keep counts only
  // against evictions for the same owner (eviction_policy.hpp).
  // Errors: not_found, permission_denied (a buffer shared with `owner`,
  // not its own). Context: takes the manager mutex only; never blocks
  // on a buffer lock or a fence.
  status advise(owner_id owner, buffer_id id, eviction_hint hint);

  // CPU access: makes the buffer CPU-reachable (migrating to host memory if
  // it is in VRAM the CPU cannot map), keeps it there until end_cpu_access,
  // and waits for the work it must not race with: a reader waits for
  // writers (WRITE), a writer for everything (READ). `timeout` bounds both
  // the migration and the wait.
  // Errors: not_found, unsupported (no host placement allowed and the CPU
  // cannot reach VRAM), device_lost, timed_out, cancelled.
  result<cpu_mapping> begin_cpu_access(owner_id owner, buffer_id id, cpu_access_mode mode,
                                       fence_clock::duration timeout = wait_forever,
                                       const cancel_token* cancel = nullptr);
  // Errors: not_found, bad_state (no access begun).
  status end_cpu_access(owner_id owner, buffer_id id);

  // begin_cpu_access in two halves, for callers that must not block (the
  // daemon's sessions): pins and, where needed, migrates (waiting for room
  // up to `timeout`), then returns at once with the fence to wait for. The
  // caller waits for `ready` its own way and calls end_cpu_access in any
  // case, also when it gives up waiting.
  // Errors: as begin_cpu_access, less the fence wait's.
  result<pending_cpu_access> start_cpu_access(owner_id owner, buffer_id id, cpu_access_mode mode,
                                              fence_clock::duration timeout = default_move_timeout,
                                              const cancel_token* cancel = nullptr);

  // The fence to wait for before an allocation in `placements` that failed
  // with timed_out (given a zero timeout) can find room: memory on its way
  // back to those domains (delayed frees, evictions in flight). A signaled
  // stub when nothing is on its way. Never fails (unknown placements are
  // skipped). Context: never blocks.
  fence_ptr room_fence(std::span<const placement> placements);

  // Exports the buffer's memory as a new fd (the caller owns it), once its
  // pending move or clear is done (the receiver has no fence to wait for).
  // Each export is a hold of `owner` on the buffer until release_export()
  // or release_owner(owner): a buffer freed while held stays, charged to
  // its owner, and its memory goes to no other buffer (DESIGN.md, "Exported
  // memory is not reused while anyone can reach it").
  // Errors: not_found, and the backend's (unsupported without fd backing).
  // `timeout` bounds the wait for that move or clear (zero: only test;
  // timed_out when it is still running).
  result<exported_memory> export_fd(owner_id owner, buffer_id id,
                                    fence_clock::duration timeout = default_move_timeout);

  // The fence of the buffer's moves and clears still running (its KERNEL
  // fences), a signaled stub when none: what export and a fresh mapping
  // wait for, for callers that wait their own way. Errors: not_found.
  result<fence_ptr> pending_moves(owner_id owner, buffer_id id);

  // The buffer an fd from export_fd() reaches, made usable by `importer`
  // as if shared with it (dma-buf's rule: holding the fd is the right to
  // use the buffer). The fd is only looked at (fstat), not kept.
  // Errors: invalid_argument (not a memory file), not_found (no export of
  // this manager, its buffer is gone, or the buffer moved since the fd was
  // exported - the fd reaches its old pages: export again), bad_state (the
  // owner freed it). Context: one fstat, the manager lock.
  result<imported_buffer> import_fd(owner_id importer, int fd);

  // `receiver` is done with one fd export_fd() gave it for buffer `id` (and
  // with every copy it passed on). The last hold of a buffer its owner
  // freed frees it. Errors: not_found (no unreleased export of that buffer
  // by `receiver`).
  status release_export(owner_id receiver, buffer_id id);

  // Errors: not_found.
  result<buffer_info> info(owner_id owner, buffer_id id) const;

  // Quota on the bytes `owner` may hold (0 = none). Never fails.
  void set_quota(owner_id owner, std::uint64_t bytes);

  // An owner went away (a client disconnected or died): detaches its
  // attachments, releases its exports, signals the fences it added with
  // -ECONNRESET, frees its buffers (importers of shared ones keep them).
  // Returns buffers freed.
  std::size_t release_owner(owner_id owner);

  // Everything, for `xbuf stat`: per domain, per owner, counters.
  // Also frees delayed-free memory whose fences signaled.
  manager_stats stats();
  // Every live buffer (all owners), for `xbuf stat` and tests.
  std::vector<buffer_info> buffers() const;
  // The allocations, frees and moves after event `since` that `visible`
  // lets through, at most `max` (event_log.hpp). Never blocks on a fence;
  // takes only the event log's leaf lock, with `visible` called under it.
  event_log::page events_since(std::uint64_t since, std::size_t max,
                               const std::function<bool(owner_id)>& visible) const {
    return events_.since(since, max, visible);
  }

  const backend& device_backend() const noexcept { return backend_; }

  // --- calls that never wait (fast_paths.cpp) ---
  // For callers that must not block: xbufd's io thread, where every
  // session's requests are read, tries these first and hands the request
  // to its worker pool only when they decline (server/handlers.hpp).
  //
  // Each answers nothing (nullopt) when answering would mean waiting -
  // nothing was done then, call the blocking twin - or else exactly what
  // its twin would have answered, same codes, same messages.
  //
  // Context: never waits on a fence, never waits for a reservation lock
  // (they are only trylocked: another thread - another tenant's map that
  // migrates the buffer and waits for room - may hold one for as long as
  // its timeout). They do take the manager mutex, which is held only for
  // bounded work and never across a wait (Rules: it is dropped to wait):
  // as long as one manager call on another thread, never as long as a
  // client wants. Locking: mutex_ must not be held by the caller.

  // allocate(), when the request need not wait for anything: the first
  // placement the owner may use has a free block of the size now (or the
  // request fails its checks before looking for room). Then allocate()
  // itself runs. nullopt: that domain is full - only eviction, and so a
  // wait for moves, can make room - or `req.timeout` is not zero (such a
  // request may wait in allocate(): only the caller can do that waiting).
  // A race with another thread for the same room makes the allocation
  // evict here; that starts moves (pipelined) and does not wait for them.
  std::optional<result<buffer_id>> try_allocate(owner_id owner, const alloc_request& req);
  // free(). nullopt: another thread holds the buffer's reservation.
  std::optional<status> try_free(owner_id owner, buffer_id id);
  // end_cpu_access(). nullopt: another thread holds the buffer's reservation.
  std::optional<status> try_end_cpu_access(owner_id owner, buffer_id id);
  // Buffers placed in all domains now: what one stats() walks. Never blocks
  // on anything but the mutex; O(domains).
  std::size_t placed_buffers() const;

 private:
  // Where a buffer is about to live: a heap index and the memory taken there.
  struct placed {
    int domain = -1;
    heap_allocation allocation;
  };

  explicit memory_manager(manager_config config);

  // --- the API boundary (memory_manager.cpp) ---
  // Each public call runs its *_unguarded twin inside guarded() (core/
  // guarded.hpp), so an exception from std (bad_alloc) becomes an error
  // value and never crosses the API. The twins are where the work is.
  result<buffer_id> allocate_unguarded(owner_id owner, const alloc_request& req);
  status free_unguarded(owner_id owner, buffer_id id);
  status share_unguarded(owner_id owner, buffer_id id, owner_id with);
  result<attachment_id> attach_unguarded(owner_id owner, buffer_id id, const attach_request& req,
                                         const cancel_token* cancel);
  status detach_unguarded(owner_id owner, attachment_id id);
  result<mapping> map_unguarded(owner_id owner, attachment_id id, const cancel_token* cancel,
                                fence_clock::duration timeout);
  status unmap_unguarded(owner_id owner, attachment_id id);
  status add_fence_unguarded(owner_id owner, buffer_id id, fence_ptr f, fence_usage usage,
                             std::optional<fence_clock::time_point> deadline);
  result<validate_report> validate_unguarded(owner_id owner, std::span<const buffer_id> ids,
                                             const cancel_token* cancel,
                                             fence_clock::duration timeout);
  status advise_unguarded(owner_id owner, buffer_id id, eviction_hint hint);
  result<cpu_mapping> begin_cpu_access_unguarded(owner_id owner, buffer_id id, cpu_access_mode mode,
                                                 fence_clock::duration timeout,
                                                 const cancel_token* cancel);
  status end_cpu_access_unguarded(owner_id owner, buffer_id id);
  result<pending_cpu_access> start_cpu_access_unguarded(owner_id owner, buffer_id id,
                                                        cpu_access_mode mode,
                                                        fence_clock::duration timeout,
                                                        const cancel_token* cancel);
  result<exported_memory> export_fd_unguarded(owner_id owner, buffer_id id, fence_clock::duration timeout);
  status release_export_unguarded(owner_id receiver, buffer_id id);
  // Freed by its owner, attached by nobody, exported to nobody: destroyed.
  void destroy_if_unreachable_locked(buffer& buf) XBUF_REQUIRES(mutex_);
  result<imported_buffer> import_fd_unguarded(owner_id importer, int fd);
  // Remembers which buffer (at which generation) fd `e` reaches, for
  // import_fd; forgets the buffer's exports of older generations.
  void record_export_locked(buffer& buf, const exported_memory& e) XBUF_REQUIRES(mutex_);
  result<buffer_info> info_unguarded(owner_id owner, buffer_id id) const;

  // --- lookups (memory_manager.cpp) ---
  // A buffer (or attachment) of `owner`, with the buffer's reservation
  // locked by the calling thread and checked to be still alive; the lock is
  // released when the result goes. mutex_ must not be held (lock order).
  // Errors: not_found.
  struct locked_buffer {
    std::shared_ptr<buffer> buf;
    std::unique_lock<ww_mutex> resv;
  };
  struct locked_attachment {
    std::shared_ptr<buffer> buf;
    std::shared_ptr<attachment> att;
    std::unique_lock<ww_mutex> resv;
  };
  result<locked_buffer> lock_buffer(owner_id owner, buffer_id id) XBUF_EXCLUDES(mutex_);
  result<locked_attachment> lock_attachment(owner_id owner, attachment_id id) XBUF_EXCLUDES(mutex_);
  // nullptr when unknown or not visible to `owner`.
  std::shared_ptr<buffer> find_locked(owner_id owner, buffer_id id) const XBUF_REQUIRES(mutex_);
  std::shared_ptr<attachment> find_attachment_locked(owner_id owner, attachment_id id,
                                                     std::shared_ptr<buffer>* buf) const
      XBUF_REQUIRES(mutex_);
  // The heap of domain `d` (an index from domain_of or buffer::domain).
  heap& at(int d) const XBUF_REQUIRES(mutex_) { return *heaps_[static_cast<std::size_t>(d)]; }

  // --- placement (placement.cpp) ---
  // The one domain `p` names exactly; -1 when none does. placement::
  // pageable() names one only where there is one pageable heap: elsewhere
  // ask domains_of.
  int domain_of(const placement& p) const noexcept XBUF_REQUIRES(mutex_);
  // The domains `p` stands for, in order of preference, appended to `out`
  // unless already there: one for VRAM, pinned or pageable(n); for
  // pageable() every pageable heap, the one of NUMA node `near` first, then
  // (no `near`, or no heap for it) by free bytes (domain.hpp). Returns false
  // when `p` names no domain of this machine.
  bool domains_of(const placement& p, int near, std::vector<int>& out) const XBUF_REQUIRES(mutex_);
  // The NUMA node pageable() means for a buffer of placements `ps` leaving
  // domain `from` (-1: none): the node of `from`'s GPU, else of the first
  // VRAM placement's GPU whose node is known; -1 when neither says.
  int near_node(std::span<const placement> ps, int from) const XBUF_REQUIRES(mutex_);
  // The domains of `ps` in order, each once, pageable() near
  // near_node(ps, from). Sets *unknown to the first placement that
  // names no domain (when given; such a placement is skipped).
  std::vector<int> domains_for(std::span<const placement> ps, int from = -1,
                               const placement** unknown = nullptr) const XBUF_REQUIRES(mutex_);
  bool cpu_reachable(int domain) const noexcept XBUF_REQUIRES(mutex_);
  // Can `att` use memory in `domain`? Fills reason and peer.
  bool reachable(const attachment& att, int domain, std::string* reason, bool* peer) const
      XBUF_REQUIRES(mutex_);
  // The domains among `buf`'s placements that `att` can reach (the CPU when
  // `att` is null), in order of preference, `buf`'s own domain left out.
  // attach, map and CPU access migrate to the first of these with room.
  std::vector<int> reachable_targets(const buffer& buf, const attachment* att) const
      XBUF_REQUIRES(mutex_);
  // Finds room for `size` bytes in the first of `domains` that has it,
  // evicting (pipelined) from full ones; drops mutex_ to wait for
  // evictions, until `deadline`. After a few rounds whose room went to
  // other threads, or at the deadline, any of `domains` with room now will
  // do - unless `caller_retries` (alloc_request): then the deadline is a
  // timed_out. `self` (may be null) is never evicted.
  // With `quota_owner`, domains where that owner's domain quota has no room
  // are passed over, checked again after every wait: the caller places the
  // bytes before it drops mutex_, so the check and the charge are one step.
  result<placed> make_room_locked(const std::vector<int>& domains, std::uint64_t size,
                                  std::uint64_t alignment, const buffer* self,
                                  fence_clock::time_point deadline, const cancel_token* cancel,
                                  std::string_view what,
                                  std::optional<owner_id> quota_owner = std::nullopt,
                                  bool caller_retries = false) XBUF_REQUIRES(mutex_);
  // Whether a full domains[i] is passed over, unevicted, for a later one:
  // so it is for a pageable heap when another pageable heap (another NUMA
  // node's) follows it.
  bool falls_through_locked(const std::vector<int>& domains, std::size_t i) const XBUF_REQUIRES(mutex_);
  // The out_of_memory error of make_room_locked: each domain, its holders.
  error no_room_locked(const std::vector<int>& domains, std::uint64_t size,
                       std::string_view what) XBUF_REQUIRES(mutex_);
  void reap_locked() XBUF_REQUIRES(mutex_);
  // Zeroes a new buffer's memory where its heap reuses memory, on the
  // backend's engine; the fill becomes the buffer's KERNEL fence, so every
  // map and CPU access waits for it. Reservation held.
  status clear_new_locked(buffer& buf) XBUF_REQUIRES(mutex_);
  void touch_locked(buffer& buf) XBUF_REQUIRES(mutex_);

  // --- eviction (eviction.cpp) ---
  // Evicts from `domain` until about `needed` bytes are on their way out.
  // Returns the bytes whose moves were started.
  std::uint64_t evict_locked(int domain, std::uint64_t needed, const buffer* self)
      XBUF_REQUIRES(mutex_);
  // Moves `victim` (reservation held) out of `domain`, if it fits anywhere
  // else. Returns the bytes on their way out (0 when it fits nowhere).
  std::uint64_t evict_one_locked(buffer& victim, int domain) XBUF_REQUIRES(mutex_);
  // "owner 2 holds 1 MiB in 4 buffers, ...": the largest holders of a domain.
  std::string holders_locked(int domain) const XBUF_REQUIRES(mutex_);

  // --- migration (migration.cpp) ---
  // Moves `buf` (reservation held by the caller) into `to`.
  // `why`: evict, promote or migrate (the event it records, and the eviction count).
  status move_locked(buffer& buf, placed to, memory_event_kind why) XBUF_REQUIRES(mutex_);
  // Moves `buf` into the first of `domains`, making room. Reservation held.
  status migrate_locked(buffer& buf, const std::vector<int>& domains,
                        fence_clock::time_point deadline, const cancel_token* cancel,
                        std::string_view why) XBUF_REQUIRES(mutex_);
  // One buffer of validate(): promote, defer or leave it.
  status promote_locked(buffer& b, validate_report& report, fence_clock::time_point deadline,
                        const cancel_token* cancel) XBUF_REQUIRES(mutex_);

  // --- attachments (attachments.cpp) ---
  mapping make_mapping_locked(const buffer& buf, const attachment& att) const XBUF_REQUIRES(mutex_);
  // The buffer's owner-visible end: out of the index, memory to delayed free.
  void destroy_locked(buffer& buf) XBUF_REQUIRES(mutex_);

  manager_config config_;
  backend& backend_;
  deadline_watchdog watchdog_;

  mutable mutex mutex_;
  std::vector<std::unique_ptr<heap>> heaps_ XBUF_GUARDED_BY(mutex_);
  std::vector<int> pageable_domains_ XBUF_GUARDED_BY(mutex_);  // by NUMA node, ascending
  buffer_index buffers_ XBUF_GUARDED_BY(mutex_);
  std::map<attachment_id, std::weak_ptr<attachment>> attachment_index_ XBUF_GUARDED_BY(mutex_);
  std::map<attachment_id, buffer_id> attachment_buffer_ XBUF_GUARDED_BY(mutex_);
  std::map<owner_id, std::vector<std::weak_ptr<fence>>> owner_fences_ XBUF_GUARDED_BY(mutex_);
  accounting accounts_ XBUF_GUARDED_BY(mutex_);
  attachment_id next_attachment_id_ XBUF_GUARDED_BY(mutex_) = 1;
  manager_counters counters_ XBUF_GUARDED_BY(mutex_);
  event_log events_;  // its own leaf lock
  // Exported memory files by (st_dev, st_ino): what import_fd() looks up.
  struct export_record {
    buffer_id id = 0;
    std::uint64_t generation = 0;
  };
  std::map<std::pair<std::uint64_t, std::uint64_t>, export_record> exports_ XBUF_GUARDED_BY(mutex_);
  // Set from move jobs' fence callbacks, folded into counters_ by stats().
  std::shared_ptr<std::atomic<std::uint64_t>> failed_moves_ =
      std::make_shared<std::atomic<std::uint64_t>>(0);
};

}  // namespace xbuf
