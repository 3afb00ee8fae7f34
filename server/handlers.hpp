// SPDX-License-Identifier: MIT
//
// handlers.hpp - what xbufd does for each request: the route table.
//
// Overview
//   Every request type has one route: decode the frame into its message,
//   call the handler, encode the handler's result as the reply. A handler is
//   a plain function of (session_context&, const request&) returning the
//   reply body or an error value; no sockets, no Asio, so each one is tested
//   on a real memory manager without a daemon (tests/server/handlers_test).
//
//     request frame --find_route--> route --run_route--> route_outcome
//                                    | where: session (never blocks) or
//                                    |        pool (may block: the manager)
//                                    | try_run: a pool route's attempt on
//                                    |        the session (never blocks)
//
//   Most requests are answered on the session, without the two thread
//   switches of a trip to the pool and back (issue 11: on a busy daemon
//   they were most of a request's cost, the allocator under 0.2%). A pool
//   route whose work usually needs no waiting has a try_run: the same
//   handler's work through the manager's calls that never wait
//   (memory_manager.hpp, "calls that never wait"); when the try declines -
//   a reservation another thread holds, room only eviction can make - the
//   request goes to the pool as before, and nothing was done inline. The
//   reply is the same either way (tests/server/inline_routes_test).
//
//   The session (session.hpp) only decides where a route runs, sends the
//   outcome, and when a handler hands back a fence_wait, waits for its fence
//   without blocking a thread, then either answers (wait: finish_wait()) or
//   runs the same request again (rerun: alloc waiting for memory on its way
//   back, cpu_begin waiting for the work it must not race with). So no
//   shared thread ever waits for a client: a pool job only does bounded
//   work and hands the waiting to the session (DESIGN.md, Tenancy).
//
//   How results become wire statuses: a handler's error value goes out as
//   that error's code and message; a frame that does not decode as its
//   message is protocol_error; a request before hello is bad_state; a
//   request type without a route is unsupported. Exceptions (std's, only
//   bad_alloc in practice) are not caught here: they stop at the session
//   boundary (session::handle), which answers io_error.
//
// Rules
//   - Context: a route whose `where` is run_on::pool may block briefly
//     (manager and buffer locks) and must run on the worker pool, never on
//     an io_context thread; run_on::session routes and try_runs never block.
//     None waits for a fence a client controls: such waits become
//     fence_waits.
//   - What "never blocks" allows: the manager mutex (it is held for bounded
//     work only, never across a wait - memory_manager.hpp, Rules: at worst
//     the io thread waits for one manager call of a pool thread), leaf
//     locks (fences, the client registry, the event log), and posting
//     events. Never a reservation lock except by trylock: another tenant
//     can hold one of a buffer shared with it for as long as its request's
//     timeout (a map that migrates the buffer and waits for room), and one
//     tenant must not stall another's session - nor the io thread, which
//     serves every session. Work on the session stays small: a stats that
//     would walk many buffers goes to the pool.
//   - Every client fence has a deadline of at most max_fence_deadline, so
//     every fence_wait ends in finite time even if its client never
//     signals.
//   - One request of a session at a time: the session starts the next only
//     after the reply of this one is queued. Handlers may therefore read and
//     change the session_context without ordering concerns of their own;
//     its members that other threads touch are thread-safe by themselves.
//   - Ownership: ids (buffers, attachments, fences) are always the calling
//     owner's; the manager refuses other owners' ids as not_found and the
//     fence table is per session, so a handler never reaches another
//     client's objects.
//   - Events: handlers only hand events to ctx.events (move_notify from the
//     manager, fence_signaled from client_fences); see event_sink.hpp.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <variant>

#include "allocator/memory_manager.hpp"
#include "core/cancel_token.hpp"
#include "core/result.hpp"
#include "server/client_fences.hpp"
#include "server/client_registry.hpp"
#include "server/event_sink.hpp"
#include "server/log.hpp"
#include "server/outgoing_frame.hpp"
#include "server/fd_inbox.hpp"
#include "server/pressure_notice.hpp"
#include "server/protocol.hpp"

namespace xbuf::server {

// A request being run again after a fence_wait (handlers.cpp: alloc,
// cpu_begin): when its waiting ends, and the CPU access cpu_begin began.
// Outside session_context: clang 14 cannot default-construct a nested
// struct with member initializers inside std::optional of its enclosing one.
struct rerun_state {
  fence_clock::time_point deadline = fence_clock::time_point::max();
  // alloc: until when an out_of_memory is retried after a memory_pressure
  // event went out (clients giving chunks back); unset before the first.
  std::optional<fence_clock::time_point> pressure_until;
  // alloc: waits for evictions so far. After a few, the room they made has
  // gone to others each time (a contended domain): the next try takes any
  // placement with room (alloc_request::caller_retries off).
  unsigned alloc_waits = 0;
  std::optional<std::uint64_t> cpu_buffer;  // cpu_begin: access begun on it, reply pending
  fence_ptr cpu_ready;
  std::uint64_t cpu_size = 0;
};

// What a handler works with: the daemon's shared parts (borrowed) and the
// state of one session (owned). Shared between the session and the worker
// jobs it started, so it outlives every one of them.
struct session_context {
  session_context(memory_manager& m, client_registry& c, const logger& l, owner_id o, event_sink e)
      : mm(m), clients(c), log(l), owner(o), events(e), fences(std::move(e)) {}

  memory_manager& mm;        // borrowed; thread-safe
  client_registry& clients;  // borrowed; thread-safe
  const logger& log;         // borrowed
  const owner_id owner;      // this client, for every manager call
  const event_sink events;   // this session's events (move_notify)
  cancel_token cancel;       // shutdown or hang-up: ends the session's blocking calls
  client_fences fences;      // the fences this client knows by id
  std::atomic<bool> greeted{false};  // hello succeeded; requests before it are refused

  // Who the operator is for stats (stats.hpp, visible_to): a peer of this
  // uid or root sees every tenant. The daemon's own; tests set another.
  std::uint32_t daemon_uid = static_cast<std::uint32_t>(::geteuid());

  // Daemon limits, set by the session from the server's configuration.
  fence_clock::duration max_fence_deadline = std::chrono::seconds(10);  // client fences are forced after it
  fence_clock::duration alloc_wait = default_move_timeout;  // an alloc waits this long for evictions
  // Where an alloc that finds no room says so to every client (nullptr:
  // nobody is told, the alloc fails at once), and how long it then retries.
  pressure_notice* pressure = nullptr;
  fence_clock::duration pressure_grace = std::chrono::milliseconds(500);

  // fds this client sent (SCM_RIGHTS) for its import requests.
  fd_inbox incoming_fds;

  // The request being rerun after a fence_wait (one request at a time).
  std::optional<rerun_state> rerun;
};

// Where a route runs (see Rules).
enum class run_on : std::uint8_t { session, pool };

// Set by a handler whose reply must wait for `fence`, for up to timeout_ms.
// Then: rerun false (wait) - the session answers with finish_wait();
// rerun true (alloc, cpu_begin) - the session runs the request again, and
// the handler picks up from session_context::rerun.
struct fence_wait {
  fence_ptr fence;
  std::uint64_t id = 0;          // the client's id for it, for the timeout message
  std::uint32_t timeout_ms = 0;  // 0: only test; wait_forever_ms: no limit
  bool rerun = false;
};
inline constexpr std::uint32_t wait_forever_ms = UINT32_MAX;

// A reply now, or a fence to wait for first (handlers that may have to wait).
template <class Reply>
using reply_or_wait = std::variant<Reply, fence_wait>;

// One request's result: a reply ready to send, or (wait only) a fence to
// wait for first.
struct route_outcome {
  outgoing_frame reply;
  std::optional<fence_wait> wait;  // set: reply is empty; call finish_wait() after waiting
};

struct route {
  wire::msg_type type;
  run_on where;
  route_outcome (*run)(session_context& ctx, const wire::frame& f);  // decode -> handler -> encode
  // Optional, for pool routes: the request tried on the session first
  // (never blocks); nullopt: it would have to wait, nothing was done - run
  // `run` on the pool. Absent: a pool route always goes to the pool.
  std::optional<route_outcome> (*try_run)(session_context& ctx, const wire::frame& f) = nullptr;
};

// Every route, in msg_type order: one per request type this daemon serves.
std::span<const route> route_table() noexcept;

// The route of a request type; nullptr when there is none.
const route* find_route(std::uint16_t type) noexcept;

// Runs one request frame: refuses it before hello (bad_state) and without a
// route (`r` null: unsupported, "reply(x): not implemented by this xbufd"),
// else runs the route. Context: that of r->where. Throws only what std
// throws (bad_alloc); the session turns that into a status.
route_outcome run_route(const route* r, session_context& ctx, const wire::frame& f);

// The request answered without blocking, if it can be: what run_route
// answers for a session route, a refusal (before hello, no route) or a
// pool route's try_run that did not decline. nullopt: run run_route on the
// pool. Context: never blocks (Rules); any thread, the io thread included.
// Throws only what std throws (bad_alloc), as run_route.
std::optional<route_outcome> try_route(const route* r, session_context& ctx, const wire::frame& f);

// The reply to a wait once the fence signaled or the time is up: the
// fence's own error, or timed_out naming the fence and the timeout.
outgoing_frame finish_wait(const wire::frame_header& request, const fence_wait& w);

// The reply a request gets when handling it threw: io_error
// "xbufd internal error: <what>". Used by the session boundary only.
outgoing_frame internal_error_reply(const wire::frame_header& request, std::string_view what);

// ---------------------------------------------------------------------------
// The handlers. Errors are the manager's (memory_manager.hpp) unless listed.

// Errors: unsupported (another protocol version).
result<wire::hello_reply> hello(session_context& ctx, const wire::hello_request& m);
// Never waits for evictions itself: when memory is on its way back it hands
// the session room_fence() and is rerun, until ctx.alloc_wait has passed.
// Errors: invalid_argument (unknown flags), and allocate()'s (timed_out
// once alloc_wait passed while memory was still on its way).
result<reply_or_wait<wire::buffer_reply>> alloc(session_context& ctx, const wire::alloc_request& m);
status free_buffer(session_context& ctx, const wire::free_request& m);
// alloc and free without waiting (memory_manager::try_allocate, try_free):
// nullopt when they would have to wait, else what alloc / free answer.
std::optional<result<reply_or_wait<wire::buffer_reply>>> try_alloc(session_context& ctx,
                                                                   const wire::alloc_request& m);
std::optional<status> try_free_buffer(session_context& ctx, const wire::free_request& m);
// One export of the buffer the client is done with (it and its receivers).
status release_export(session_context& ctx, const wire::release_request& m);
status share(session_context& ctx, const wire::share_request& m);
// The owner's eviction hint for its buffer (memory_manager::advise).
status advise(session_context& ctx, const wire::advise_request& m);

// export's reply travels with the exported fd.
struct export_result {
  wire::export_reply body;
  unique_fd fd;
};
// Waits for the buffer's running move or clear on the session (rerun), not
// on the pool.
result<reply_or_wait<export_result>> export_buffer(session_context& ctx, const wire::export_request& m);

// Dynamic attachments report moves as move_notify events.
result<wire::attach_reply> attach(session_context& ctx, const wire::attach_request& m);
status detach(session_context& ctx, const wire::detach_request& m);
// A move still in flight becomes a tracked fence: the reply's wait_fence.
// The ranges are offsets within the buffer's export (wire_range), never the
// daemon's addresses.
result<wire::map_reply> map(session_context& ctx, const wire::map_request& m);
status unmap(session_context& ctx, const wire::unmap_request& m);
// The fence's deadline is the client's, capped at ctx.max_fence_deadline
// (none, 0, is the cap): past it xbufd signals it -ETIMEDOUT.
result<wire::fence_reply> add_client_fence(session_context& ctx, const wire::add_client_fence_request& m);
// Errors: not_found (no such fence id), permission_denied (made by xbufd),
// invalid_argument (error not 0 or a negative errno), already_signaled.
status signal_client_fence(session_context& ctx, const wire::signal_client_fence_request& m);
// Errors: not_found (no such fence id). The waiting itself is the session's.
result<fence_wait> wait(session_context& ctx, const wire::wait_request& m);
result<wire::validate_reply> validate(session_context& ctx, const wire::validate_request& m);
// Pins at once (start_cpu_access) and hands the session the fence of the
// work it must not race with; rerun once it signaled (or the time is up:
// the access ends, timed_out).
result<reply_or_wait<wire::cpu_begin_reply>> cpu_begin(session_context& ctx, const wire::cpu_begin_request& m);
status cpu_end(session_context& ctx, const wire::cpu_end_request& m);
// cpu_end without waiting for the buffer's reservation; nullopt: another
// thread holds it.
std::optional<status> try_cpu_end(session_context& ctx, const wire::cpu_end_request& m);
// What the asker may see (stats.hpp, visible_to): its own uid's clients
// and buffers, or everything for the operator. Never fails.
result<wire::stats_reply> stats(session_context& ctx, const wire::stats_request& m);
// stats on the session while the daemon holds at most stats_inline_buffers
// buffers (each is looked at); nullopt past that: the pool's work.
inline constexpr std::size_t stats_inline_buffers = 1024;
std::optional<result<wire::stats_reply>> try_stats(session_context& ctx, const wire::stats_request& m);
// The memory events after m.since the client may see (stats.hpp, collect_trace).
result<wire::trace_reply> trace(session_context& ctx, const wire::trace_request& m);
result<wire::import_reply> import_fd(session_context& ctx, const wire::import_request& m);

}  // namespace xbuf::server
