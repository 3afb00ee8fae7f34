// SPDX-License-Identifier: MIT
//
// listener.hpp - xbufd's listening socket and its accept loop (internal).
//
// Overview
//   The socket file is the daemon's (DESIGN.md "The socket is the
//   daemon's"): whoever can create or replace the path first can take the
//   clients' hellos (their names, and what they ask for) and answer them, so
//   the path is checked before the daemon binds it. The accept loop only
//   spawns sessions, except at the fd limit, where it backs off on a timer.
//
// Rules
//   - bind_listener() owns the socket file. Its directory must not be
//     writable by anyone but the daemon's uid or root: a world-writable one
//     (/tmp) only when the path was given explicitly and the daemon's uid
//     owns that directory; a directory another user owns, never. A file at
//     the path that another uid owns is left alone and reported (a stale
//     socket too: it is not ours to delete). Our own stale socket (nobody
//     listening) is replaced; a live one, or a path that is not a socket,
//     is left alone and reported.
//   - The socket file is created with socket_mode already applied (umask
//     around bind), so it is never reachable with wider permissions, then
//     given socket_group when one is set.
//   - The accept loop only spawns: each connection becomes a session on its
//     own strand with a new owner id. At the fd limit (EMFILE, ENFILE) it
//     neither spins nor logs per failure: it refuses the connections that
//     wait (with the one fd it keeps in reserve for that), logs once per
//     interval, and retries after config.accept_backoff.
#pragma once

#include <sys/types.h>

#include <boost/asio.hpp>
#include <cstdint>

#include "core/result.hpp"
#include "server/server.hpp"
#include "server/server_state.hpp"

namespace xbuf::server {

// A listening Unix stream socket on config.socket_path with
// config.socket_mode and config.socket_group. Errors: as run_server's
// (server.hpp). Context: changes the process umask for the bind (call it
// before other threads create files). Ownership: the caller owns the fd.
result<int> bind_listener(const server_config& config);

// Tells a connection that it is not served, without blocking: when its
// hello already arrived, the hello gets an error reply carrying `why`;
// otherwise the client only sees the connection close. Shuts the socket
// down; the caller closes it.
void refuse_connection(int fd, const error& why) noexcept;

// Accepts until the acceptor is closed (stage one of shutdown).
// Context: a coroutine on srv.ioc; logs accept errors (rate-limited) and
// goes on.
asio::awaitable<void> accept_loop(server_state& srv, asio::local::stream_protocol::acceptor& acceptor);

}  // namespace xbuf::server
