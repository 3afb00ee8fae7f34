// SPDX-License-Identifier: MIT
//
// stats.hpp - the stats reply (what `xbuf stat` shows) and the daemon's
// periodic status screen.
//
// Overview
//   collect_stats() assembles wire::stats_reply from the manager's
//   manager_stats and buffer list plus the connected clients: per domain,
//   per client (bytes and buffers it holds, joined by owner id), per buffer,
//   and the counters.
//
//   What a reply may hold is decided once, by visible_to(): the operator
//   sees every client and buffer; a tenant sees the clients of its own uid
//   and their buffers, and domains and counters only as totals (DESIGN.md,
//   "A client sees only its own"). Every list stops at its wire cap (protocol.hpp: max_stat_*),
//   names at theirs, so the reply is at most wire::stats_reply_max_bytes;
//   more_clients / more_buffers count the rows left out. No paging: the
//   first rows by owner and buffer id are listed, the counts say how much
//   is missing.
//
// Rules
//   - Context: calls memory_manager::stats() and buffers(), which take the
//     manager's mutex and may block: never on an io_context thread; run it
//     on the worker pool. Allocates.
//   - Locking: takes the registry's mutex after the manager's calls
//     returned, never both at once.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>

#include "allocator/memory_manager.hpp"
#include "server/client_registry.hpp"
#include "server/protocol.hpp"

namespace xbuf::server {

enum class stats_view : std::uint8_t {
  tenant,      // its own uid's clients and buffers; domains and counters as totals
  everything,  // every client and buffer (the operator)
};

// THE visibility rule, the only place it is made (view_for() and every row
// collect_stats() lists go through it). `viewer` is the asking client's
// registry record, `subject` that of the client a row is about.
//   - The operator - a peer whose SO_PEERCRED uid is root (0) or
//     `daemon_uid` (the daemon's own effective uid) - sees every row: it
//     can read the daemon's memory anyway (ptrace, /proc/<pid>/mem), so
//     hiding tenants from it protects nothing and only blinds whoever runs
//     the machine.
//   - A tenant sees the rows of clients with its own uid: its own
//     connection and its other ones (say, a job's workers, or `xbuf stat`
//     run by the same user). A process of the same uid can ptrace the
//     others anyway; anything of another uid - names, pids, buffer ids,
//     sizes - it never sees, only the per-domain totals and counters.
//   - No record (credentials unknown, or a client that has left) sees
//     nothing and is seen by no tenant: the rule fails closed.
bool visible_to(const std::optional<client_record>& viewer, std::uint32_t daemon_uid,
                const std::optional<client_record>& subject) noexcept;

// everything when `viewer` sees every row (the operator), else tenant.
stats_view view_for(const std::optional<client_record>& viewer, std::uint32_t daemon_uid) noexcept;

// The reply for client `self` (its view: view_for() of its registry record
// and `daemon_uid`). Never fails: stats are read, not computed under any
// condition that can.
wire::stats_reply collect_stats(memory_manager& mm, const client_registry& clients, owner_id self,
                                std::uint32_t daemon_uid);

// Everything, for the daemon's own screen (print_status): the operator view.
wire::stats_reply collect_stats(memory_manager& mm, const client_registry& clients);

// A manager with no daemon around it (libxbuf's embedded mode): every
// buffer, domain and counter, no client rows.
wire::stats_reply collect_stats(memory_manager& mm);

// The memory events (memory_manager::events_since) after `since` that
// client `self` may see - visible_to() over a registry snapshot, as the
// stats rows - at most `max`. Context: takes the registry's mutex, then
// the event log's leaf lock; never the manager's.
wire::trace_reply collect_trace(const memory_manager& mm, const client_registry& clients, owner_id self,
                                std::uint32_t daemon_uid, std::uint64_t since, std::size_t max);

// The --stats-interval screen: one header line, one line per domain and per
// client, the counters. Context: writes to `out` and flushes it.
void print_status(std::FILE* out, const wire::stats_reply& s);

// The counters as people read them, three to a line of at most 96 columns:
// labels that say what is counted, bytes in binary units, and the bytes
// held in place by pins and no-evict buffers on a line of their own (they
// are not the pinned domain). Shared by the daemon's screen and `xbuf stat`.
void print_counters(std::FILE* out, const wire::stats_reply& s);

}  // namespace xbuf::server
