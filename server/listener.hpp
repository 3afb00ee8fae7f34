// SPDX-License-Identifier: MIT
//
// listener.hpp - xbufd's listening socket and its accept loop (internal).
//
// Rules
//   - bind_listener() owns the socket file: a stale one (nobody listening)
//     is replaced; a live one, or a path that is not a socket, is left alone
//     and reported.
//   - The accept loop only spawns: each connection becomes a session on its
//     own strand with a new owner id; nothing else happens here.
#pragma once

#include <boost/asio.hpp>

#include "core/result.hpp"
#include "server/server.hpp"
#include "server/server_state.hpp"

namespace xbuf::server {

// A listening Unix stream socket on config.socket_path with
// config.socket_mode. Errors: as run_server's (server.hpp).
// Ownership: the caller owns the returned fd.
result<int> bind_listener(const server_config& config);

// Accepts until the acceptor is closed (stage one of shutdown).
// Context: a coroutine on srv.ioc; logs accept errors and goes on.
asio::awaitable<void> accept_loop(server_state& srv, asio::local::stream_protocol::acceptor& acceptor);

}  // namespace xbuf::server
