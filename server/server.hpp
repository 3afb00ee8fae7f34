// SPDX-License-Identifier: MIT
//
// server.hpp - xbufd's Unix-socket server over a memory manager.
//
// Overview
//   One listening Unix stream socket; one session per connection, each on
//   its own strand, each a memory_manager owner. A session runs a reader
//   coroutine (read with a size limit -> frame_parser -> one request at a
//   time, in order) and a writer coroutine (a queue of frames, some carrying
//   an fd as SCM_RIGHTS; it sleeps on a timer used as a condition variable).
//   What a request does is the route table's business (handlers.hpp): one
//   line per request type, decode -> handler -> encode. Manager calls may
//   block (locks, evictions), so their routes run on a small worker pool and
//   their result is resumed on the session's strand; fence waits are fence
//   callbacks posted to the strand plus a timer - no io_context thread ever
//   blocks on a fence.
//
//   Events: move_notify (called by the manager under its locks) and fence
//   callbacks only post a frame onto the session's strand (event_sink.hpp).
//
//   A session ends on EOF, a socket error, a malformed frame (after an error
//   reply when the request id is known) or shutdown; then its owner is
//   released (attachments dropped, fences signaled with an error, buffers
//   freed after their fences). Other sessions never notice.
//
//   The folder, by concern:
//     server.cpp          this function: io_context, worker pool, shutdown
//     listener.*          the socket file and the accept loop (only spawns)
//     session.*           one connection: reader, writer, send, hang-up watch
//     handlers.*          the route table and one plain function per request
//     client_fences.*     the fences a client knows by id
//     client_registry.*   who is connected (stats, shutdown)
//     stats.*             the stats reply and the status screen
//     metrics_*           --metrics: the address, the Prometheus text, the HTTP listener
//     protocol.*          the wire format (shared with client/, no Asio)
//
// Rules
//   - This header, protocol.hpp, handlers.hpp and the files it includes are
//     Asio-free, so xbufd_main and the handler tests compile fast and test
//     without sockets; only server.cpp, listener.*, session.*,
//     metrics_http.* (and Beast) and server_state.hpp include Asio.
//   - Exceptions from std or Asio stop at the session boundary
//     (session::handle): the request gets an io_error status (or the
//     session closes); the daemon keeps serving.
//   - Shutdown is two-stage: SIGINT/SIGTERM closes the acceptor and cancels
//     every session; run_server returns once every owner was released and
//     the worker pool drained.
//   - Lock order inside the daemon: the manager's locks (its own rules) ->
//     client_registry / client_fences mutexes (leaves; no fence or manager
//     call is made under them) -> fence lock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "allocator/memory_manager.hpp"
#include "core/result.hpp"
#include "server/metrics_address.hpp"

namespace xbuf::server {

struct server_config {
  std::string socket_path;          // required
  // Given by --socket or XBUF_SOCKET rather than defaulted: only then may
  // the socket live in a world-writable directory, and only one the daemon's
  // uid owns (listener.hpp).
  bool socket_path_explicit = false;
  unsigned socket_mode = 0660;      // permissions of the socket file
  std::string socket_group;         // empty: the daemon's group; else the socket file's group
  // A socket that already listens (systemd socket activation, systemd.hpp):
  // served instead of binding socket_path, which the daemon then neither
  // checks, makes nor removes (its .socket unit owns the file and its mode).
  // -1: bind socket_path. run_server owns the fd from the call on.
  int listen_fd = -1;
  int worker_threads = 2;           // blocking manager calls run here
  int stats_interval_s = 0;         // > 0: print a status screen to stdout this often
  bool log = true;                  // connects, disconnects, protocol errors to stderr
  // --metrics: serve GET /metrics (Prometheus text) here; nothing: no
  // metrics endpoint. Once it listens, xbufd prints "xbufd: metrics on
  // http://HOST:PORT/metrics" on stdout (with the port the kernel picked
  // for port 0), --quiet or not.
  std::optional<metrics_address> metrics;

  // Limits (DESIGN.md "Limits are configurable and enforced atomically").
  // Connections listed at once; one more is told so and closed.
  std::size_t max_connections = 512;
  // Bytes of replies and events queued to one session and not yet taken by
  // its client; past it the session is closed (it does not read). 64 frames
  // of max_payload: a client that reads never comes near it.
  std::size_t max_queued_bytes = 4u << 20;
  // A connection must send hello, and a started frame must complete,
  // within this long; else it is closed.
  std::chrono::milliseconds frame_timeout{10'000};
  // At the fd limit the accept loop retries this often (logging once per
  // log interval), instead of spinning on EMFILE.
  std::chrono::milliseconds accept_backoff{100};
  // Descriptors a new connection may not take (at most a quarter of the
  // limit): what is left for buffers, exports and answering with an error.
  std::size_t fd_headroom = 32;
  // Every client fence is forced (-ETIMEDOUT) after at most this long: no
  // client stalls eviction, or another tenant's wait, for longer.
  std::chrono::milliseconds max_fence_deadline{10'000};
  // How long an alloc waits for evictions (on its session, not a thread).
  std::chrono::milliseconds alloc_wait{30'000};
};

// Raises the soft RLIMIT_NOFILE to the hard limit: sessions, exported
// buffers and backend objects all cost fds, and the soft default (often
// 1024) is a fraction of what the system allows the daemon.
// Returns {soft limit before, soft limit now}. Errors: io_error (getrlimit
// or setrlimit, with errno text). Context: call once at start.
struct fd_limits {
  std::uint64_t before = 0;
  std::uint64_t now = 0;
};
result<fd_limits> raise_fd_limit();
// (Defined with the listener.)

// Serves `mm` on config.socket_path until SIGINT or SIGTERM.
// A stale socket file (nobody listening) is replaced; a live one, or a path
// that is not a socket, is an error.
// Errors: invalid_argument (empty or too long path, unknown socket group),
// already_exists (a daemon is listening there; a non-socket file is in the
// way), permission_denied (the path or its directory is not the daemon's:
// see listener.hpp), io_error (bind/listen/chown, naming the path and
// errno text; the metrics address cannot be bound, naming it).
// Context: blocks for the daemon's lifetime; installs signal handlers;
// raises the soft RLIMIT_NOFILE to the hard limit.
// Ownership: borrows mm; every owner it created is released before it returns.
status run_server(memory_manager& mm, const server_config& config);

}  // namespace xbuf::server
