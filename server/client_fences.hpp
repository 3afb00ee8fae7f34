// SPDX-License-Identifier: MIT
//
// client_fences.hpp - the fences one client knows by number.
//
// Overview
//   A client names fences by small ids that only mean something on its own
//   connection: fences it made (add_client_fence; it may signal them) and
//   fences xbufd told it to wait for (map's wait_fence, a move in flight;
//   only xbufd signals those). Each tracked fence reports its signal to the
//   client once as a fence_signaled event.
//
//   Tracking is two steps, track() then arm(): a fence tracked while a
//   request is handled starts reporting only once that request's reply is
//   queued, so the client never sees a fence_signaled event for an id its
//   reply has not told it yet. A fence that signals before arm() sends no
//   event; the client's wait() still finds it signaled.
//
//   Signaled fences are pruned, or a client that adds and signals fences
//   for hours would grow the daemon by every fence it ever made (the issue
//   measured 38 MiB for 40k). track() sweeps the table once it has doubled
//   since the last sweep (amortized O(1) per fence), so
//       |fences_| <= max(min_sweep_at, 2 * |unsignaled fences|) + 1.
//   A pruned fence stays findable among the last recent_capacity pruned
//   ones, so a wait() or signal() right after the signal still gets the
//   fence's own answer; an id older than that is not_found, like an id
//   never given. Its fence_signaled report was sent (or was never due: it
//   signaled before arm()).
//
// Rules
//   - Thread-safe: handlers track and look up fences on worker threads; the
//     session arms and forgets them on its strand. mutex_ is a leaf: fence
//     calls (add_callback, remove_callback) are made after it was dropped.
//   - The fence callbacks only call the event sink (see event_sink.hpp).
//   - forget_all() removes every callback; after it returns no event of
//     this table is posted any more. The destructor forgets too. Pruning
//     removes the callback of each fence it drops (waiting for a running
//     one), so that promise holds for pruned fences as well.
// Ownership: holds a reference on every tracked fence until forget_all().
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <vector>

#include "core/fence.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"
#include "server/event_sink.hpp"

namespace xbuf::server {

class client_fences {
 public:
  explicit client_fences(event_sink events);
  ~client_fences();
  client_fences(const client_fences&) = delete;
  client_fences& operator=(const client_fences&) = delete;

  // A new unsignaled fence on this client's own fence context (one context
  // per client, seqnos in order). Not tracked yet.
  fence_ptr make_client_fence() XBUF_EXCLUDES(mutex_);

  // Gives `f` the next id. `client_made`: the client may signal it.
  // Context: may sweep signaled fences out of the table first (fence calls,
  // outside mutex_; may wait for a fence_signaled report being posted).
  std::uint64_t track(fence_ptr f, bool client_made) XBUF_EXCLUDES(mutex_);

  // Starts the fence_signaled reports of every fence tracked since the
  // last arm(). Context: the session calls it after queueing a reply.
  void arm() XBUF_EXCLUDES(mutex_);

  struct entry {
    fence_ptr fence;
    bool client_made = false;
  };
  // The fence with this id, or nothing when this client has none such (or
  // it was pruned longer ago than the last recent_capacity prunes).
  std::optional<entry> find(std::uint64_t id) const XBUF_EXCLUDES(mutex_);

  // Fences in the table now, and the most it ever held (the daemon logs the
  // peak when the session ends: a bounded table is checkable from outside).
  std::size_t size() const XBUF_EXCLUDES(mutex_);
  std::size_t peak_size() const XBUF_EXCLUDES(mutex_);

  static constexpr std::size_t min_sweep_at = 64;
  static constexpr std::size_t recent_capacity = 256;

  // Stops every report and drops every reference (the session is ending).
  // Context: may wait for a callback running on another thread to return.
  void forget_all() XBUF_EXCLUDES(mutex_);

 private:
  struct tracked {
    fence_ptr f;
    bool client_made = false;
    bool armed = false;
    std::optional<fence::callback_id> callback;  // posts fence_signaled
  };

  const event_sink events_;
  const std::uint64_t context_;  // fence context of the client's own fences

  // Moves the signaled fences of fences_ into recent_ and removes their
  // callbacks. Context: fence calls outside mutex_.
  void sweep_signaled() XBUF_EXCLUDES(mutex_);

  mutable xbuf::mutex mutex_;
  std::map<std::uint64_t, tracked> fences_ XBUF_GUARDED_BY(mutex_);
  // Ids tracked since the last arm(): what it arms, so a reply costs the
  // fences it named, not every fence the client holds. (An id pruned or
  // forgotten meanwhile is skipped.)
  std::vector<std::uint64_t> unarmed_ XBUF_GUARDED_BY(mutex_);
  // The last recent_capacity pruned fences, by id, and their prune order.
  std::map<std::uint64_t, entry> recent_ XBUF_GUARDED_BY(mutex_);
  std::deque<std::uint64_t> recent_order_ XBUF_GUARDED_BY(mutex_);
  std::size_t sweep_at_ XBUF_GUARDED_BY(mutex_) = min_sweep_at;
  std::size_t peak_ XBUF_GUARDED_BY(mutex_) = 0;
  std::uint64_t next_id_ XBUF_GUARDED_BY(mutex_) = 1;
  std::uint64_t seqno_ XBUF_GUARDED_BY(mutex_) = 0;
};

}  // namespace xbuf::server
