// SPDX-License-Identifier: MIT
//
// accounting.hpp - who holds how much: owners' bytes and quotas, pins and the
// pinned limit, in one place.
//
// Overview
//   Every budget the memory manager enforces is charged and refunded here,
//   and every check happens in the same call as its charge, so two requests
//   racing for the last bytes of a budget cannot both pass it: the manager
//   calls these with its mutex held and charges *before* it drops that mutex
//   to wait for evictions (a failed allocation is refunded).
//
// Invariants (manager mutex held; buffer fields also under the reservation)
//   owner_bytes(o) == sum of b.size over o's buffers that o has not freed
//   owner_buffers(o) == number of those buffers         <= max_buffers
//   domain_bytes(o, d) == sum of b.size over o's live buffers placed in d
//   b.pins         == b.pinned_attachments + b.cpu_accesses + (b.no_evict ? 1 : 0)
//   pinned_bytes() == sum of b.size over buffers with b.no_evict or
//                     b.pinned_attachments > 0
//   pinned_bytes() <= pinned_limit() and, where set,
//   owner_bytes(o) <= quota(o)                       (after every charge)
//   domain_bytes(o, d) <= domain_quota                (after every placement
//                        the owner asked for: allocate, validate; a move the
//                        daemon decides - eviction, a migration an importer
//                        needs - is counted but not refused)
//
// Rules
//   - Not locked itself: the manager's mutex guards it (as it guards heaps).
//   - Functions that touch a buffer's pins also need its reservation held
//     (buffer.hpp, [both]); they assert it.
//   - Never blocks, never waits on a fence.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "allocator/buffer.hpp"
#include "core/result.hpp"

namespace xbuf {

struct owner_stats {
  owner_id owner = 0;
  std::uint64_t bytes = 0;    // allocated and not freed by the owner
  std::size_t buffers = 0;
  std::uint64_t quota = 0;    // 0 = none
  // Freed by the owner, still alive and charged to it in its domain:
  std::uint64_t freed_exported_bytes = 0;  // an export of it is not released yet
  std::uint64_t freed_attached_bytes = 0;  // not exported, but still attached
  std::uint64_t peak_bytes = 0;   // the most `bytes` has been
  std::uint64_t total_bytes = 0;  // every allocation's bytes, added up
};

// The budgets every owner gets (0 = no limit).
struct owner_limits {
  std::uint64_t pinned_limit = 0;      // all owners together (required, > 0)
  std::uint64_t domain_quota = 0;      // bytes one owner may place in one domain
  std::size_t max_buffers = 0;         // buffers one owner may hold
};

class accounting {
 public:
  explicit accounting(std::uint64_t pinned_limit) : accounting(owner_limits{.pinned_limit = pinned_limit}) {}
  explicit accounting(owner_limits limits) : pinned_limit_(limits.pinned_limit), limits_(limits) {}

  // --- owners' bytes and quotas ---

  // Charges `size` bytes of a new buffer to `owner` (and one buffer), and to
  // the pinned bytes when `no_evict`. Errors: quota_exceeded naming the
  // quota, the buffer limit or the pinned limit, prefixed with `what`;
  // nothing is charged then.
  status charge_new(owner_id owner, std::uint64_t size, bool no_evict, std::string_view what);
  // Undoes charge_new for an allocation that failed afterwards.
  void refund_new(owner_id owner, std::uint64_t size, bool no_evict) noexcept;
  // The buffer now exists: its no_evict pin is counted on it.
  void placed_new(buffer& b) noexcept;
  // The owner freed `b` (importers may keep it alive): its bytes leave the owner.
  void owner_freed(const buffer& b) noexcept;
  // `b` is gone from the manager: its no_evict bytes leave the pinned bytes.
  void destroyed(const buffer& b) noexcept;

  void set_quota(owner_id owner, std::uint64_t bytes) { quotas_[owner] = bytes; }
  std::uint64_t owner_bytes(owner_id owner) const noexcept;
  std::size_t owner_buffers(owner_id owner) const noexcept;

  // --- where owners' bytes are (per domain) ---

  // May `owner` place `size` more bytes in `domain`? The caller places them
  // (placed/moved) before it drops the manager mutex, so check and charge
  // are one step.
  bool domain_allows(owner_id owner, int domain, std::uint64_t size) const noexcept;
  // "owner 3 holds 768 KiB of 1 MiB in vram0": why domain_allows said no.
  std::string domain_quota_text(owner_id owner, int domain, std::string_view name) const;
  void placed(const buffer& b, int domain) noexcept;
  void moved(const buffer& b, int from, int to) noexcept;
  void removed(const buffer& b, int domain) noexcept;
  std::uint64_t domain_bytes(owner_id owner, int domain) const noexcept;
  std::uint64_t domain_quota() const noexcept { return limits_.domain_quota; }
  // Drops the owner's quota and CPU-access records; returns the buffers whose
  // CPU accesses it still had, with their counts, for the caller to end
  // under each buffer's reservation.
  std::vector<std::pair<buffer_id, int>> forget_owner(owner_id owner);

  // --- pins ---

  // Pins `b` for a pinned attachment. The first such pin of a buffer that is
  // not no_evict charges its size to the pinned bytes. Errors:
  // quota_exceeded (pinned limit) prefixed with `what`; nothing changes then.
  status pin_attachment(buffer& b, std::string_view what);
  void unpin_attachment(buffer& b) noexcept;

  // CPU access by `owner` holds `b` still until it ends (no byte charge:
  // the access is short and the bytes are the owner's already).
  void begin_cpu_access(owner_id owner, buffer& b);
  // Errors: bad_state when `owner` has no CPU access to `b` open.
  status end_cpu_access(owner_id owner, buffer& b, std::string_view what);
  // Ends every CPU access to `b` (its owner freed it). Returns how many.
  int end_all_cpu_access(buffer& b) noexcept;
  // Ends `count` accesses of a departed owner to `b` (see forget_owner).
  void end_departed_cpu_access(buffer& b, int count) noexcept;

  std::uint64_t pinned_bytes() const noexcept { return pinned_bytes_; }
  std::uint64_t pinned_limit() const noexcept { return pinned_limit_; }

  // Per owner: bytes and quota (buffers counted by the caller).
  std::map<owner_id, owner_stats> owners() const;

 private:
  status check_pinned(std::uint64_t more, std::string_view what) const;

  const std::uint64_t pinned_limit_;
  const owner_limits limits_;
  std::uint64_t pinned_bytes_ = 0;
  std::map<owner_id, std::uint64_t> owner_bytes_;
  std::map<owner_id, std::size_t> owner_buffers_;
  std::map<std::pair<owner_id, int>, std::uint64_t> domain_bytes_;
  std::map<owner_id, std::uint64_t> quotas_;
  struct history {
    std::uint64_t peak = 0, total = 0;
  };
  std::map<owner_id, history> history_;  // peak and total bytes, until forget_owner
  std::map<std::pair<owner_id, buffer_id>, int> cpu_accesses_;
};

}  // namespace xbuf
