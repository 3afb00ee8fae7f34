// SPDX-License-Identifier: MIT
//
// session.hpp - one client connection of xbufd (internal).
//
// Overview
//   A session is the coroutines of one connection, on its own strand:
//     reader  reads with a size limit, feeds the frame_parser, and handles
//             one request at a time, in order: the route runs inline or on
//             the worker pool (handlers.hpp, try_route), its reply is sent
//             at once when nothing is queued before it, else queued;
//     writer  sends the queue of frames (export's reply with its fd as
//             SCM_RIGHTS); it sleeps on a timer used as a condition variable;
//   plus a hang-up watch while a request is on the pool or waits for a
//   fence, so a client that disappears inside a blocking call cancels it.
//   Events (move_notify, fence_signaled) arrive through the session's event
//   sink, which only posts to the strand.
//
//   A session ends on EOF, a socket error, a malformed frame (after an error
//   reply when the request id is known) or shutdown; then its owner is
//   released (fences forgotten, attachments dropped, the client's fences
//   signaled with an error, buffers freed after their fences) and it leaves
//   the client registry. Other sessions never notice.
//
// Rules
//   - Strand only: the socket, the queue, the parser and the flags. Worker
//     jobs touch only the session_context they share with the session.
//   - Exceptions stop here (the session boundary): a request whose handling
//     threw gets an io_error reply; the session goes on.
//   - Stage one of shutdown is the cancel hook the session leaves in the
//     registry: it cancels the session's blocking calls and closes its
//     socket; the session then releases its owner by itself (stage two).
#pragma once

#include <boost/asio.hpp>

#include "allocator/buffer.hpp"
#include "server/server_state.hpp"

namespace xbuf::server {

// Starts a session on an accepted socket (its executor is the session's
// strand) for the new owner `owner`. Context: the io_context thread.
void start_session(server_state& srv, asio::local::stream_protocol::socket sock, owner_id owner);

}  // namespace xbuf::server
