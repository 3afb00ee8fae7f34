// SPDX-License-Identifier: MIT
//
// event_sink.hpp - how daemon-pushed events (move_notify, fence_signaled)
// reach a session's writer.
//
// Context
//   An event_sink is called from wherever the event happens: move_notify
//   runs under the manager's mutex and a buffer's reservation lock, a fence
//   callback on whatever thread signals the fence. So a sink must only hand
//   the bytes over (the session's sink posts them to its strand): it never
//   blocks, never takes an xbuf lock, and does nothing once its session is
//   gone. It may allocate.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "server/protocol.hpp"

namespace xbuf::server {

// Takes one encoded event frame. Copyable; outlives the session safely.
using event_sink = std::function<void(std::vector<std::uint8_t> frame)>;

// Encodes `ev` as an event frame (request id 0) and hands it to `sink`.
template <class E>
void post_event(const event_sink& sink, const E& ev) {
  if (sink) sink(wire::encode_message(0, ev));
}

}  // namespace xbuf::server
