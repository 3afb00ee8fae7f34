// SPDX-License-Identifier: MIT
#include "allocator/accounting.hpp"

#include <algorithm>

#include <string>

#include "core/units.hpp"

namespace xbuf {

status accounting::check_pinned(std::uint64_t more, std::string_view what) const {
  if (pinned_bytes_ + more <= pinned_limit_) return ok();
  return fail(errc::quota_exceeded, std::string(what) + ": pinned limit " +
                                        format_bytes(pinned_limit_) + " would be passed (" +
                                        format_bytes(pinned_bytes_) + " pinned, " +
                                        format_bytes(more) + " more)");
}

status accounting::charge_new(owner_id owner, std::uint64_t size, bool no_evict,
                              std::string_view what) {
  if (limits_.max_buffers != 0 && owner_buffers(owner) >= limits_.max_buffers) {
    return fail(errc::quota_exceeded, std::string(what) + ": owner " + std::to_string(owner) + " holds " +
                                          std::to_string(owner_buffers(owner)) + " buffers, the most allowed");
  }
  if (auto q = quotas_.find(owner); q != quotas_.end() && q->second != 0) {
    const auto held = owner_bytes(owner);
    if (held + size > q->second) {
      return fail(errc::quota_exceeded, std::string(what) + ": owner quota " +
                                            format_bytes(q->second) + " would be passed (" +
                                            format_bytes(held) + " held)");
    }
  }
  if (no_evict) {
    if (auto s = check_pinned(size, what); !s) return s;
    pinned_bytes_ += size;
  }
  owner_bytes_[owner] += size;
  ++owner_buffers_[owner];
  return ok();
}

void accounting::refund_new(owner_id owner, std::uint64_t size, bool no_evict) noexcept {
  owner_bytes_[owner] -= size;
  --owner_buffers_[owner];
  if (no_evict) pinned_bytes_ -= size;
}

void accounting::placed_new(buffer& b) noexcept {
  b.resv.assert_held();
  if (b.no_evict) ++b.pins;
  // Counted once the allocation stands (a refunded one never happened).
  auto& h = history_[b.owner];
  h.total += b.size;
  h.peak = std::max(h.peak, owner_bytes(b.owner));
}

void accounting::owner_freed(const buffer& b) noexcept {
  owner_bytes_[b.owner] -= b.size;
  --owner_buffers_[b.owner];
}

std::size_t accounting::owner_buffers(owner_id owner) const noexcept {
  auto it = owner_buffers_.find(owner);
  return it == owner_buffers_.end() ? 0 : it->second;
}

std::uint64_t accounting::domain_bytes(owner_id owner, int domain) const noexcept {
  auto it = domain_bytes_.find({owner, domain});
  return it == domain_bytes_.end() ? 0 : it->second;
}

bool accounting::domain_allows(owner_id owner, int domain, std::uint64_t size) const noexcept {
  return limits_.domain_quota == 0 || domain_bytes(owner, domain) + size <= limits_.domain_quota;
}

std::string accounting::domain_quota_text(owner_id owner, int domain, std::string_view name) const {
  return "owner " + std::to_string(owner) + " holds " + format_bytes(domain_bytes(owner, domain)) + " of " +
         format_bytes(limits_.domain_quota) + " allowed in " + std::string(name);
}

void accounting::placed(const buffer& b, int domain) noexcept { domain_bytes_[{b.owner, domain}] += b.size; }

void accounting::moved(const buffer& b, int from, int to) noexcept {
  removed(b, from);
  placed(b, to);
}

void accounting::removed(const buffer& b, int domain) noexcept {
  auto it = domain_bytes_.find({b.owner, domain});
  if (it == domain_bytes_.end()) return;
  it->second -= b.size;
  if (it->second == 0) domain_bytes_.erase(it);
}

void accounting::destroyed(const buffer& b) noexcept {
  if (b.no_evict) pinned_bytes_ -= b.size;
}

std::uint64_t accounting::owner_bytes(owner_id owner) const noexcept {
  auto it = owner_bytes_.find(owner);
  return it == owner_bytes_.end() ? 0 : it->second;
}

std::vector<std::pair<buffer_id, int>> accounting::forget_owner(owner_id owner) {
  quotas_.erase(owner);
  history_.erase(owner);
  std::vector<std::pair<buffer_id, int>> open;
  std::erase_if(cpu_accesses_, [&](const auto& e) {
    if (e.first.first != owner) return false;
    open.emplace_back(e.first.second, e.second);
    return true;
  });
  return open;
}

status accounting::pin_attachment(buffer& b, std::string_view what) {
  b.resv.assert_held();
  // Bytes held still count once per buffer, however many importers pin it
  // (a no_evict buffer was counted when it was allocated).
  const bool counts = b.pinned_attachments == 0 && !b.no_evict;
  if (counts) {
    if (auto s = check_pinned(b.size, what); !s) return s;
    pinned_bytes_ += b.size;
  }
  ++b.pinned_attachments;
  ++b.pins;
  return ok();
}

void accounting::unpin_attachment(buffer& b) noexcept {
  b.resv.assert_held();
  --b.pinned_attachments;
  --b.pins;
  if (b.pinned_attachments == 0 && !b.no_evict) pinned_bytes_ -= b.size;
}

void accounting::begin_cpu_access(owner_id owner, buffer& b) {
  b.resv.assert_held();
  ++cpu_accesses_[{owner, b.id}];
  ++b.pins;
}

status accounting::end_cpu_access(owner_id owner, buffer& b, std::string_view what) {
  b.resv.assert_held();
  auto it = cpu_accesses_.find({owner, b.id});
  if (it == cpu_accesses_.end()) {
    return fail(errc::bad_state, std::string(what) + ": no CPU access begun");
  }
  if (--it->second == 0) cpu_accesses_.erase(it);
  --b.pins;
  return ok();
}

int accounting::end_all_cpu_access(buffer& b) noexcept {
  b.resv.assert_held();
  int ended = 0;
  std::erase_if(cpu_accesses_, [&](const auto& e) {
    if (e.first.second != b.id) return false;
    ended += e.second;
    return true;
  });
  b.pins -= ended;
  return ended;
}

void accounting::end_departed_cpu_access(buffer& b, int count) noexcept {
  b.resv.assert_held();
  b.pins -= count;
}

std::map<owner_id, owner_stats> accounting::owners() const {
  std::map<owner_id, owner_stats> out;
  for (const auto& [o, q] : quotas_) {
    out[o].owner = o;
    out[o].quota = q;
  }
  for (const auto& [o, h] : history_) {
    out[o].owner = o;
    out[o].peak_bytes = h.peak;
    out[o].total_bytes = h.total;
  }
  return out;
}

}  // namespace xbuf
