// SPDX-License-Identifier: MIT
//
// client_registry.hpp - who is connected to xbufd, for `xbuf stat` and shutdown.
//
// Overview
//   One entry per live session, keyed by its owner id: the peer's
//   credentials (SO_PEERCRED), the name it gave in hello, and how to cancel
//   the session (stage one of shutdown). Sessions add themselves when they
//   start and remove themselves once their owner was released, so a client
//   that is listed still holds what stats reports for it.
//
//   The registry is also the connection limit (--max-connections): a
//   session that cannot be listed is refused. Checking the count and
//   listing happen under one lock, so two racing connects can never both
//   take the last slot; and a client counts until its owner was released,
//   so a flood of connect-disconnect cannot outrun the cleanup.
//
// Rules
//   - Thread-safe: every member takes mutex_ itself. mutex_ is a leaf:
//     nothing else is locked while it is held, and cancel hooks run after it
//     was dropped (a hook may post, or call back into the registry).
//   - Context: never blocks beyond mutex_; allocates.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "allocator/buffer.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"
#include "server/event_sink.hpp"

namespace xbuf::server {

struct client_record {
  owner_id owner = 0;
  std::int32_t pid = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::string name;  // from hello; empty before it
};

class client_registry {
 public:
  // Called by cancel_all(); must not block (the session's posts to its strand).
  using cancel_hook = std::function<void()>;

  // Lists a new client. A second add for the same owner replaces the first.
  void add(client_record record, cancel_hook cancel) XBUF_EXCLUDES(mutex_);
  // Lists a new client if fewer than `limit` are listed; false (nothing
  // listed) otherwise. The check and the listing are one step.
  bool try_add(client_record record, cancel_hook cancel, std::size_t limit) XBUF_EXCLUDES(mutex_);
  // How many are listed.
  std::size_t size() const XBUF_EXCLUDES(mutex_);
  // Records the name a client gave in hello. Unknown owners are ignored.
  void set_name(owner_id owner, std::string name) XBUF_EXCLUDES(mutex_);
  // Unlists a client; returns its record (for the goodbye log line), or
  // nothing if it was not listed.
  std::optional<client_record> remove(owner_id owner) XBUF_EXCLUDES(mutex_);
  // Every listed client, by owner id.
  std::vector<client_record> snapshot() const XBUF_EXCLUDES(mutex_);
  // Calls every cancel hook once, outside the lock. Clients stay listed
  // until they remove themselves.
  void cancel_all() XBUF_EXCLUDES(mutex_);
  // Where a client's events go (its session's sink). Unknown owners are
  // ignored.
  void set_events(owner_id owner, event_sink events) XBUF_EXCLUDES(mutex_);
  // Hands `frame` (an encoded event) to every listed client's sink,
  // outside the lock.
  void post_to_all(const std::vector<std::uint8_t>& frame) const XBUF_EXCLUDES(mutex_);

 private:
  struct entry {
    client_record record;
    cancel_hook cancel;
    event_sink events;
  };

  mutable xbuf::mutex mutex_;
  std::map<owner_id, entry> clients_ XBUF_GUARDED_BY(mutex_);
};

}  // namespace xbuf::server
