// SPDX-License-Identifier: MIT
//
// remote_client.hpp - libxbuf as a client of xbufd.
//
// Overview
//   A synchronous client over the daemon's Unix socket: each method sends
//   one request and reads until its reply arrives, dispatching any events
//   (move_notify, fence_signaled, memory_pressure) that come first to the callbacks. Between
//   requests, poll_events() reads pending events. The reply to export_fd
//   carries an fd (SCM_RIGHTS), handed to the caller.
//
//   Ids are the daemon's: buffer ids, attachment ids and fence ids are only
//   meaningful on this connection's owner (or after share()).
//
// Rules
//   - One request at a time: a remote_client is not thread-safe; use one
//     per thread or lock around it.
//   - Errors are values: the daemon's status comes back as its errc and
//     message; a broken connection is io_error, a malformed reply
//     protocol_error; after either the client is unusable (every call
//     returns io_error).
//   - Callbacks run inside a method call or poll_events(), on the caller's
//     thread; they must not call back into the same client.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/result.hpp"
#include "server/protocol.hpp"

namespace xbuf::client {

struct exported_buffer {
  int fd = -1;  // owned by the caller: close it
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  memory_kind kind = memory_kind::host_pageable;
};

using move_notify_callback = std::function<void(const wire::move_notify_event&)>;
using fence_signaled_callback = std::function<void(const wire::fence_signaled_event&)>;
using memory_pressure_callback = std::function<void(const wire::memory_pressure_event&)>;

// Who may answer on the socket. Whoever can bind the path first receives
// the client's hello and everything after it, so the client checks the
// server's uid (SO_PEERCRED) before it says anything: root, this process's
// own uid, or the one given here. Unset: $XBUF_SERVER_UID when set.
struct connect_options {
  std::optional<std::uint32_t> server_uid;
};

class remote_client {
 public:
  // Connects, checks the server's credentials, and says hello.
  // Errors: io_error (connect, naming the path and errno), permission_denied
  // (the server runs as a uid that is not root, ours or the trusted one;
  // nothing was sent to it), invalid_argument (XBUF_SERVER_UID is not a
  // uid), unsupported (version mismatch), protocol_error.
  // Context: blocks on the socket.
  static result<remote_client> connect(const std::string& socket_path, const std::string& client_name,
                                       const connect_options& options = {});

  remote_client(remote_client&&) noexcept;
  remote_client& operator=(remote_client&&) noexcept;
  ~remote_client();  // closes the connection: the daemon releases this owner

  owner_id owner() const noexcept { return owner_; }

  // Errors of each: the daemon's (see memory_manager.hpp for the codes per
  // call) plus io_error / protocol_error for the connection.
  result<buffer_id> alloc(std::uint64_t size, std::vector<placement> placements,
                          std::string name = {}, std::uint32_t flags = 0, std::uint64_t alignment = 0);
  status free(buffer_id id);
  status share(buffer_id id, owner_id with);
  status advise(buffer_id id, eviction_hint hint);
  // Ownership: the returned fd belongs to the caller.
  result<exported_buffer> export_fd(buffer_id id);
  // One export of `id` this client is done with (memory_manager::release_export).
  status release_export(buffer_id id);
  // The buffer an exported fd reaches (another client's export, passed on
  // to us), usable from now on as if shared with us. The fd is sent, not
  // taken: the caller still owns and closes it.
  result<wire::import_reply> import_fd(int fd);
  result<attachment_id> attach(buffer_id id, int device, attach_mode mode, bool peer_capable = false);
  status detach(attachment_id id);
  // The reply's ranges are offsets within the buffer's export: byte
  // `offset` of the buffer is at exported_buffer::offset + offset in the fd
  // export_fd() hands out (never a daemon address).
  result<wire::map_reply> map(attachment_id id);
  status unmap(attachment_id id);
  result<std::uint64_t> add_client_fence(buffer_id id, fence_usage usage, std::uint32_t deadline_ms = 0);
  status signal_client_fence(std::uint64_t fence, int error = 0);
  // ok = signaled, with the fence's error (0 or -errno); timed_out otherwise.
  result<int> wait(std::uint64_t fence, std::uint32_t timeout_ms);
  result<wire::validate_reply> validate(std::vector<buffer_id> ids);
  result<std::uint64_t> cpu_begin(buffer_id id, bool write, std::uint32_t timeout_ms = 0);
  status cpu_end(buffer_id id);
  // This client's view (wire::stats_reply: its own uid's, or everything for
  // the operator), at most max_stat_clients / max_stat_buffers rows.
  result<wire::stats_reply> stats();
  // The memory events after `since` this client may see (at most `max`).
  result<wire::trace_reply> trace(std::uint64_t since, std::uint32_t max = wire::max_trace_events);

  void on_move_notify(move_notify_callback cb) { move_notify_ = std::move(cb); }
  void on_fence_signaled(fence_signaled_callback cb) { fence_signaled_ = std::move(cb); }
  void on_memory_pressure(memory_pressure_callback cb) { memory_pressure_ = std::move(cb); }
  // Reads events for up to timeout_ms (0 = only what is already there) and
  // dispatches them. Returns how many were dispatched.
  result<std::size_t> poll_events(int timeout_ms);

  // Sends raw bytes (tests: malformed frames). Errors: io_error.
  status send_raw(std::span<const std::uint8_t> bytes);

 private:
  explicit remote_client(int fd);
  template <class R, class M>
  result<R> call(const M& request);
  // send_raw with `fd` as SCM_RIGHTS on the first bytes.
  status send_with_fd(std::span<const std::uint8_t> bytes, int fd);
  // Reads until the reply to `id`, dispatching events on the way; fds that
  // arrive are queued in fds_ for export_fd to claim.
  result<wire::frame> read_reply(std::uint64_t id);
  // One recvmsg; false at EOF/error. timeout_ms < 0 = block.
  result<bool> read_some(int timeout_ms);
  bool dispatch_event(const wire::frame& f);
  error broken(error e);
  void close_all() noexcept;

  int fd_ = -1;
  owner_id owner_ = 0;
  std::uint64_t next_id_ = 1;
  std::unique_ptr<wire::frame_parser> parser_;
  std::deque<int> fds_;  // received with SCM_RIGHTS, not yet claimed
  std::optional<error> broken_;
  move_notify_callback move_notify_;
  fence_signaled_callback fence_signaled_;
  memory_pressure_callback memory_pressure_;
};

}  // namespace xbuf::client
