// SPDX-License-Identifier: MIT
//
// buffer.hpp - the memory manager's buffer and attachment objects.
//
// Overview
//   A buffer is memory with a size, an ordered list of placements it may
//   live in, a current placement, a reservation (lock + fences), an owner
//   and the attachments of the devices that use it. An attachment is one
//   importer's claim on a buffer: pinned (the buffer must not move) or
//   dynamic (the importer is told before every move, dma_buf_attachment's
//   move_notify).
//
//   These objects are the manager's; users see ids (memory_manager.hpp).
//
// Rules - who guards what
//   - [const]  set at creation, never changed.
//   - [both]   written with the buffer's reservation lock AND the manager
//              mutex held; read with either held. Placement, backing, pins:
//              the evictor reads them under the manager mutex (after a
//              trylock), a job under its reservation lock.
//   - [mgr]    manager mutex only (LRU position, ownership, sharing).
//   - [resv]   reservation lock only.
//   - -Wthread-safety checks the reservation half: [both] and [resv] fields
//     are XBUF_GUARDED_BY(resv.mutex()), so no write (nor a read) can forget
//     the buffer lock. The manager's mutex cannot be named from a buffer, so
//     [mgr] fields are checked through the manager's helpers, which say
//     XBUF_REQUIRES(mutex_); reads of [both] fields under the manager mutex
//     alone (stats) go through read_both_unlocked(), where the rule is used.
//   - lost is atomic: a move job sets it from a fence callback.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "allocator/domain.hpp"
#include "allocator/eviction_policy.hpp"
#include "allocator/heap.hpp"
#include "core/reservation.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

using owner_id = std::uint32_t;
using buffer_id = std::uint64_t;
using attachment_id = std::uint64_t;

enum class attach_mode : std::uint8_t {
  pinned,   // the buffer stays where the importer can reach it, never moves
  dynamic,  // the buffer may move; move_notify is called first
};

// What an importer is told before its buffer moves.
struct move_notice {
  buffer_id buffer = 0;
  attachment_id attachment = 0;
  placement from;
  placement to;
};
// Called with the buffer's reservation lock and the manager mutex held, on
// the thread that decided the move: it must only record that the importer's
// mapping is stale (the daemon queues an event) - never call back into the
// manager, never block.
using move_notify_fn = std::function<void(const move_notice&)>;

struct attachment {
  const attachment_id id;
  const owner_id owner;              // the importer's client
  const int device;                  // importing device; -1 = the CPU
  const attach_mode mode;
  const bool peer_capable;           // accepts another device's VRAM address
  const move_notify_fn move_notify;  // required for dynamic attachments
  bool mapped = false;               // [resv]
  std::uint64_t mapped_generation = 0;  // [resv] buffer generation at map()
};

struct buffer {
  const buffer_id id;
  const owner_id owner;
  const std::uint64_t size;
  const std::uint64_t alignment;
  const std::vector<placement> placements;  // in order of preference
  const bool cpu_access;
  const bool no_evict;
  const std::string name;

  reservation resv;
  int domain XBUF_GUARDED_BY(resv.mutex()) = -1;           // [both] index of the manager's heap
  heap_allocation backing XBUF_GUARDED_BY(resv.mutex());   // [both]
  // [both] pinned attachments + CPU accesses + no_evict (accounting.hpp)
  int pins XBUF_GUARDED_BY(resv.mutex()) = 0;
  int pinned_attachments XBUF_GUARDED_BY(resv.mutex()) = 0;  // [both]
  std::uint64_t generation XBUF_GUARDED_BY(resv.mutex()) = 0;  // [both] bumped on every move
  std::vector<std::shared_ptr<attachment>> attachments XBUF_GUARDED_BY(resv.mutex());  // [both]
  bool destroyed XBUF_GUARDED_BY(resv.mutex()) = false;  // [both] gone from the manager
  std::chrono::steady_clock::time_point last_promotion XBUF_GUARDED_BY(resv.mutex()){};  // [both]
  std::list<buffer*>::iterator lru_pos;  // [mgr] in the heap's lru()
  reuse_history reuse;                   // [mgr] its last uses, for eviction_policy.hpp
  bool owner_released = false;           // [mgr] the owner freed it; alive for importers
  std::set<owner_id> shared_with;        // [mgr]
  // [mgr] the (st_dev, st_ino) keys of its exports in the manager's table
  std::vector<std::pair<std::uint64_t, std::uint64_t>> export_keys;
  // [mgr] exports not yet released, per receiver (the client export_fd gave
  // the fd to). While any is held the buffer outlives its owner's free:
  // its memory stays charged to the owner and is handed to no one else.
  std::map<owner_id, std::uint32_t> export_holds;
  std::atomic<bool> lost{false};   // a move failed for good: contents are gone

  // The [both] fields a reader holding only the manager mutex may see.
  struct placement_view {
    int domain = -1;
    int pins = 0;
    std::uint64_t generation = 0;
    std::size_t attachments = 0;
    std::optional<range> range_used;  // backing.range_used: where eviction frees a block
  };
  // Reads [both] fields with the manager mutex held and the reservation
  // not: every write holds both locks, so either one suffices to read, a
  // rule -Wthread-safety cannot express (it would ask for the reservation).
  placement_view read_both_unlocked() const XBUF_NO_THREAD_SAFETY_ANALYSIS {
    return {domain, pins, generation, attachments.size(), backing.range_used};
  }

  buffer(buffer_id i, owner_id o, std::uint64_t sz, std::uint64_t align,
         std::vector<placement> where, bool cpu, bool pinned_forever, std::string n)
      : id(i), owner(o), size(sz), alignment(align), placements(std::move(where)),
        cpu_access(cpu), no_evict(pinned_forever), name(std::move(n)) {}
};

}  // namespace xbuf
