// SPDX-License-Identifier: MIT
#include "server/session.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <boost/asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "core/fd_message.hpp"
#include "server/handlers.hpp"
#include "server/listener.hpp"
#include "server/outgoing_frame.hpp"

namespace xbuf::server {

namespace {

using asio::awaitable;

using local_socket = asio::local::stream_protocol::socket;
constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);
// Pipelined requests a session answers before it lets the other sessions
// run (reader).
constexpr std::size_t yield_every = 16;

class session : public std::enable_shared_from_this<session> {
 public:
  session(server_state& srv, local_socket sock, owner_id owner)
      : srv_(srv), sock_(std::move(sock)), wake_(sock_.get_executor()), frame_timer_(sock_.get_executor()),
        owner_(owner) {
    wake_.expires_at(asio::steady_timer::time_point::max());
  }

  void start();

  // Stage one of shutdown. Context: any thread.
  void cancel() {
    ctx_->cancel.cancel();  // thread-safe: wakes a manager call blocked on this session's behalf
    asio::post(sock_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ignored;
      self->sock_.close(ignored);
      self->closing_ = true;
      self->wake_.cancel();
    });
  }

 private:
  event_sink make_event_sink();
  auto report(const char* what);
  void watch_hangup();
  void enqueue(outgoing_frame o);
  std::size_t send_now(std::span<const std::uint8_t> bytes);
  bool pressure_already_queued(const outgoing_frame& o) const;
  void close_now();
  void update_frame_deadline(bool completed_a_frame);
  void arm_frame_deadline();
  void frame_deadline_passed();

  awaitable<void> reader();
  // One read of what has arrived, taking the fds sent with it into the
  // context's inbox. An error: the connection's, or (a client that sent
  // more fds than its imports take) no_buffer_space.
  awaitable<std::pair<boost::system::error_code, std::size_t>> read_some(std::span<std::uint8_t> buf);
  awaitable<void> handle(const wire::frame& f);
  awaitable<route_outcome> run(const wire::frame& f);
  awaitable<void> await_fence(const fence_wait& w);
  awaitable<void> release(bool clean);
  awaitable<void> writer();
  awaitable<bool> send(outgoing_frame& o);
  awaitable<std::size_t> send_with_fd(outgoing_frame& o);

  server_state& srv_;
  local_socket sock_;        // its executor is this session's strand
  asio::steady_timer wake_;  // the writer's condition variable
  // --frame-timeout: hello, and each started frame, must be complete by then.
  asio::steady_timer frame_timer_;
  bool frame_timer_armed_ = false;
  std::uint64_t frame_timer_gen_ = 0;  // a timer wait of an older arming is stale
  bool reading_ = false;               // the reader is waiting for bytes
  const owner_id owner_;
  client_record record_;     // peer credentials, for the log
  // Shared with the worker jobs of this session's requests (they may
  // outlive a cancelled session by the time a manager call takes to notice).
  std::shared_ptr<session_context> ctx_;
  wire::frame_parser parser_{true};
  bool closing_ = false;      // the reader is done: flush and close
  bool writer_done_ = false;
  bool watching_ = false;     // watch_hangup() is armed
  bool sending_ = false;      // the writer has a frame out of outq_ on its way
  std::deque<outgoing_frame> outq_;
  // Bytes in outq_ plus the frame being sent: what this client has not
  // taken yet. Past config.max_queued_bytes the session is closed.
  std::size_t queued_bytes_ = 0;
};

// The session's one way in from other threads: an event frame posted to the
// strand and queued, unless the session is gone by then.
event_sink session::make_event_sink() {
  return [w = weak_from_this(), ex = sock_.get_executor()](std::vector<std::uint8_t> bytes) {
    asio::post(ex, [w, bytes = std::move(bytes)]() mutable {
      if (auto s = w.lock()) s->enqueue(outgoing_frame{std::move(bytes), {}});
    });
  };
}

// Completion of the session's coroutines: an exception that escaped is
// logged here - the last stop before the io_context.
auto session::report(const char* what) {
  return [srv = &srv_, what, owner = owner_](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      srv->log("client %u: %s stopped by exception: %s", owner, what, ex.what());
    }
  };
}

void session::start() {
  ucred cred{};
  socklen_t len = sizeof cred;
  record_.owner = owner_;
  if (::getsockopt(sock_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    record_.pid = cred.pid;
    record_.uid = cred.uid;
    record_.gid = cred.gid;
  } else {
    // Unknown peer: fail closed. uid 0 would read as root (the operator).
    record_.uid = UINT32_MAX;
    record_.gid = UINT32_MAX;
  }
  ctx_ = std::make_shared<session_context>(srv_.mm, srv_.clients, srv_.log, owner_, make_event_sink());
  ctx_->max_fence_deadline = srv_.config.max_fence_deadline;
  ctx_->alloc_wait = srv_.config.alloc_wait;
  ctx_->pressure = &srv_.pressure;
  // The connection limit: counted and checked in one step (client_registry.hpp).
  const bool listed = srv_.clients.try_add(
      record_,
      [w = weak_from_this()] {
        if (auto s = w.lock()) s->cancel();
      },
      srv_.config.max_connections);
  if (!listed) {
    const std::string why = "xbufd serves at most " + std::to_string(srv_.config.max_connections) +
                            " connections (--max-connections); try again later";
    std::uint64_t left_out = 0;
    if (srv_.refused_log.allow(&left_out)) {
      srv_.log("refused a connection (pid %d uid %u): %s [%llu more refused since the last line]", record_.pid,
               record_.uid, why.c_str(), static_cast<unsigned long long>(left_out));
    }
    refuse_connection(sock_.native_handle(), error{errc::quota_exceeded, why});
    return;  // the socket closes with this session
  }
  srv_.clients.set_events(owner_, ctx_->events);  // memory_pressure reaches it from now on
  arm_frame_deadline();  // for hello
  srv_.log("client %u connected (pid %d uid %u gid %u)", owner_, record_.pid, record_.uid, record_.gid);
  auto self = shared_from_this();
  asio::co_spawn(sock_.get_executor(), [self] { return self->reader(); }, report("reader"));
  asio::co_spawn(sock_.get_executor(), [self] { return self->writer(); }, report("writer"));
}

// While a request is handled the reader does not read, so a client that
// hangs up then would only be noticed once the request ends - never, if
// it waits on the client's own fence. This watch sees the socket become
// readable: end of stream cancels the session's blocking calls; data (a
// pipelined request) is left for the reader and the watch is re-armed
// before the next request that can take time: one that goes to the pool
// or waits for a fence. A request answered inline ends before anything
// could be cancelled, so it arms none (a wait and a peek fewer for each).
// Strand only.
void session::watch_hangup() {
  if (watching_ || closing_) return;
  watching_ = true;
  sock_.async_wait(local_socket::wait_read, [w = weak_from_this()](boost::system::error_code ec) {
    auto self = w.lock();
    if (!self) return;
    self->watching_ = false;
    if (ec) return;  // closed or cancelled
    char byte = 0;
    if (::recv(self->sock_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
      self->ctx_->cancel.cancel();  // end of stream: the client is gone
    }
  });
}

// Queues a frame. Strand only. Once the writer is done the frame (and its
// fd) is dropped.
void session::enqueue(outgoing_frame o) {
  if (writer_done_) return;
  if (pressure_already_queued(o)) return;
  // Nothing queued, nothing on its way: the socket takes the frame now, in
  // the common case whole - without waking the writer (a handler, a send
  // through the reactor and re-arming its timer, per reply). What it does
  // not take is queued first, for the writer. Frames with an fd go the
  // writer's way (SCM_RIGHTS).
  if (outq_.empty() && !sending_ && !o.fd && !o.bytes.empty()) {
    const std::size_t n = send_now(o.bytes);
    if (n == o.bytes.size()) return;
    o.bytes.erase(o.bytes.begin(), o.bytes.begin() + static_cast<std::ptrdiff_t>(n));
  }
  queued_bytes_ += o.bytes.size();
  if (queued_bytes_ > srv_.config.max_queued_bytes) {
    // A client that asks and never reads would otherwise grow the daemon
    // by every reply (the issue measured 112 MiB for 3,000 stats).
    srv_.log("client %u: closing: %zu bytes queued to it and not read (--max-queued-bytes %zu)", owner_,
             queued_bytes_, srv_.config.max_queued_bytes);
    close_now();
    return;
  }
  outq_.push_back(std::move(o));
  wake_.cancel();
}

// One nonblocking send of what the socket takes now; 0 when it takes
// nothing or failed (the writer then meets the error and ends the
// session). Strand only.
std::size_t session::send_now(std::span<const std::uint8_t> bytes) {
  const ssize_t k = ::send(sock_.native_handle(), bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  return k > 0 ? static_cast<std::size_t>(k) : 0;
}

// A memory_pressure event for a domain one still waiting in outq_ already
// names. The client learns nothing from a second one; and a client that
// does not read would otherwise collect one per pressure interval for as
// long as another tenant keeps a domain short - until --max-queued-bytes
// closed it. So at most one per domain waits for a client at a time.
bool session::pressure_already_queued(const outgoing_frame& o) const {
  const auto where = wire::pressure_domain(o.bytes);
  if (!where) return false;
  return std::any_of(outq_.begin(), outq_.end(),
                     [&](const outgoing_frame& q) { return wire::pressure_domain(q.bytes) == where; });
}

// Ends the session from the daemon's side: nothing more is sent or read;
// the reader sees the closed socket and releases the owner. Strand only.
void session::close_now() {
  outq_.clear();  // closes the fds queued with them
  queued_bytes_ = 0;
  writer_done_ = true;
  closing_ = true;
  ++frame_timer_gen_;
  frame_timer_armed_ = false;
  frame_timer_.cancel();
  ctx_->cancel.cancel();  // a blocking call on the client's behalf ends too
  boost::system::error_code ignored;
  sock_.shutdown(local_socket::shutdown_both, ignored);
  sock_.close(ignored);
  wake_.cancel();
}

// After each read was parsed: the deadline runs while hello is still due
// or part of a frame is buffered, from the time that frame started (a
// client that trickles one byte a second does not extend it); it stops
// once nothing is due. Strand only.
void session::update_frame_deadline(bool completed_a_frame) {
  const bool greeted = ctx_->greeted.load(std::memory_order_acquire);
  if (greeted && parser_.buffered() == 0) {
    if (frame_timer_armed_) {
      frame_timer_armed_ = false;
      ++frame_timer_gen_;
      frame_timer_.cancel();
    }
    return;
  }
  // A new frame started in this read: its own full timeout.
  if (frame_timer_armed_ && greeted && completed_a_frame) frame_timer_armed_ = false;
  if (!frame_timer_armed_) arm_frame_deadline();
}

void session::arm_frame_deadline() {
  frame_timer_armed_ = true;
  const std::uint64_t gen = ++frame_timer_gen_;
  frame_timer_.expires_after(srv_.config.frame_timeout);
  frame_timer_.async_wait([w = weak_from_this(), gen](boost::system::error_code ec) {
    auto self = w.lock();
    if (!self || ec || gen != self->frame_timer_gen_ || !self->frame_timer_armed_) return;
    self->frame_deadline_passed();
  });
}

void session::frame_deadline_passed() {
  if (closing_) return;
  if (!reading_) {
    // The daemon is busy with this client's earlier requests: the rest of
    // the frame waits in the socket, not in the client. Not its fault.
    arm_frame_deadline();
    return;
  }
  const long long ms = static_cast<long long>(srv_.config.frame_timeout.count());
  if (!ctx_->greeted.load(std::memory_order_acquire) && parser_.buffered() == 0) {
    srv_.log("client %u: closing: no hello within %lld ms (--frame-timeout)", owner_, ms);
  } else {
    srv_.log("client %u: closing: a frame is still incomplete after %lld ms (%zu bytes of it arrived; "
             "--frame-timeout)", owner_, ms, parser_.buffered());
  }
  close_now();
}

awaitable<void> session::reader() {
  std::array<std::uint8_t, 16 * 1024> buf{};  // each read is bounded; frames by max_payload
  bool clean = true;
  for (bool stop = false; !stop;) {
    reading_ = true;
    auto [ec, n] = co_await read_some(buf);
    reading_ = false;
    if (ec) {
      auto end = parser_.finish();
      if (end.status == wire::parse_status::bad && ec == asio::error::eof) {
        srv_.log("client %u: %s", owner_, end.error.c_str());
      }
      break;
    }
    parser_.feed(std::span<const std::uint8_t>(buf.data(), n));
    bool completed = false;
    std::size_t handled = 0;
    for (;;) {
      if (closing_) {  // closed meanwhile (limits, shutdown): parsed requests are not run
        stop = true;
        break;
      }
      auto r = parser_.next();
      if (r.status == wire::parse_status::need_more) {
        update_frame_deadline(completed);
        break;
      }
      if (r.status == wire::parse_status::bad) {
        srv_.log("client %u: protocol error, closing: %s", owner_, r.error.c_str());
        if (r.request_id) {
          enqueue({wire::encode_error_reply(r.type, *r.request_id, fail(errc::protocol_error, r.error)), {}});
        }
        clean = false;
        stop = true;
        break;
      }
      completed = true;
      co_await handle(r.frame_);
      // Requests answered inline do not give the io thread up: one read of
      // pipelined ones (16 KiB of stats requests: hundreds) would keep
      // every other session waiting until all are answered.
      if (++handled % yield_every == 0) co_await asio::post(sock_.get_executor(), asio::use_awaitable);
    }
  }
  closing_ = true;
  wake_.cancel();
  co_await release(clean);
}

awaitable<std::pair<boost::system::error_code, std::size_t>> session::read_some(std::span<std::uint8_t> buf) {
  for (;;) {
    auto [ec] = co_await sock_.async_wait(local_socket::wait_read, tuple_awaitable);
    if (ec) co_return std::pair{ec, std::size_t{0}};
    iovec iov{buf.data(), buf.size()};
    // Room for one more than the inbox holds: a client over it is seen.
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * (fd_inbox::capacity + 1))]{};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(sock_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      co_return std::pair{boost::system::error_code(errno, boost::system::system_category()), std::size_t{0}};
    }
    // MSG_CTRUNC: the kernel closed what did not fit the control buffer.
    bool too_many = (msg.msg_flags & MSG_CTRUNC) != 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < count; ++i) {
        int fd = -1;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        if (!ctx_->incoming_fds.put(unique_fd(fd))) too_many = true;
      }
    }
    if (too_many) {
      srv_.log("client %u: closing: it sent more file descriptors than its import requests take (at most %zu waiting)",
               owner_, fd_inbox::capacity);
      co_return std::pair{boost::system::error_code(asio::error::no_buffer_space), std::size_t{0}};
    }
    if (n == 0) co_return std::pair{boost::system::error_code(asio::error::eof), std::size_t{0}};
    co_return std::pair{boost::system::error_code{}, static_cast<std::size_t>(n)};
  }
}

// One request, start to reply: the session boundary. An exception from the
// handler (rethrown from the pool by on_pool) or from the waiting stops
// here and becomes an io_error reply; the session goes on.
awaitable<void> session::handle(const wire::frame& f) {
  std::string failure;
  bool replied = false;
  try {
    route_outcome out = co_await run(f);
    // A handler that must wait hands the session a fence: waited for here,
    // without a thread, then answered or run again (handlers.hpp).
    while (out.wait) {
      watch_hangup();
      co_await await_fence(*out.wait);
      if (!out.wait->rerun) {
        out.reply = finish_wait(f.header, *out.wait);
        break;
      }
      out = co_await run(f);
    }
    enqueue(std::move(out.reply));
    replied = true;
    ctx_->fences.arm();  // fences named in that reply may report now
    co_return;
  } catch (const std::exception& e) {
    failure = e.what();
  }
  if (replied) {
    srv_.log("client %u: %s: after its reply: %s", owner_, wire::type_name(f.header.type).c_str(),
             failure.c_str());
    co_return;
  }
  enqueue(internal_error_reply(f.header, failure));
}

// Runs the request's route where the table says: inline when it can be
// answered without blocking (a session route, or a pool route's try that
// did not decline), else on the worker pool (may block). The pool job
// copies the frame and shares the context, so it depends on nothing of the
// strand.
awaitable<route_outcome> session::run(const wire::frame& f) {
  const route* r = find_route(f.header.type);
  if (auto out = try_route(r, *ctx_, f)) co_return std::move(*out);
  watch_hangup();
  auto job = [ctx = ctx_, r, f] { return run_route(r, *ctx, f); };
  auto out = co_await on_pool(srv_.pool, std::move(job));
  co_return std::move(*out);
}

// Waits without blocking the strand: the fence's callback posts to the
// strand and cancels a timer that otherwise expires at the timeout.
// Shutdown or a hang-up ends the wait too.
awaitable<void> session::await_fence(const fence_wait& w) {
  if (w.fence->is_signaled() || w.timeout_ms == 0) co_return;
  auto timer = std::make_shared<asio::steady_timer>(sock_.get_executor());
  if (w.timeout_ms == wait_forever_ms) {
    timer->expires_at(asio::steady_timer::time_point::max());
  } else {
    timer->expires_after(std::chrono::milliseconds(w.timeout_ms));
  }
  // Both wakers only post: one runs under the fence's lock, the other under
  // the cancel token's.
  auto wake = [timer, ex = sock_.get_executor()] { asio::post(ex, [timer] { timer->cancel(); }); };
  auto cb = w.fence->add_callback([wake](const fence&) { wake(); });
  cancel_token::scoped_waker on_cancel(&ctx_->cancel, wake);
  if (!cb) co_return;  // signaled meanwhile
  // The callback goes however this coroutine ends: resumed, or destroyed
  // while suspended when the io_context is torn down at shutdown. One left
  // on the fence would run later (the deadline watchdog signals client
  // fences) and destroy its timer after the timer service, posting to an
  // executor that is gone - ASan caught exactly that. If the callback is
  // running right now, removal returns once its post is done.
  struct remove_on_exit {
    fence_ptr f;
    fence::callback_id id;
    ~remove_on_exit() { f->remove_callback(id); }
  } removal{w.fence, *cb};
  if (!ctx_->cancel.cancelled()) co_await timer->async_wait(tuple_awaitable);
}

// Stage two for this session: forget its fences' callbacks (they post to
// this strand) and release its owner on the pool, then leave the registry.
awaitable<void> session::release(bool clean) {
  auto job = [ctx = ctx_] {
    ctx->fences.forget_all();
    return ctx->mm.release_owner(ctx->owner);
  };
  const std::size_t freed = *co_await on_pool(srv_.pool, std::move(job));
  const std::string name = [&] {
    auto rec = srv_.clients.remove(owner_);
    return rec ? rec->name : std::string();
  }();
  srv_.log("client %u (pid %d, '%s') disconnected%s: released %zu buffers; its fence table held at most %zu",
           owner_, record_.pid, name.c_str(), clean ? "" : " after a protocol error", freed,
           ctx_->fences.peak_size());
}

awaitable<void> session::writer() {
  for (;;) {
    while (!outq_.empty()) {
      outgoing_frame o = std::move(outq_.front());
      outq_.pop_front();
      sending_ = true;
      const bool sent = co_await send(o);
      sending_ = false;
      // close_now() may have emptied the account while this frame was out.
      queued_bytes_ -= std::min(queued_bytes_, o.bytes.size());
      if (!sent) {
        // The peer is gone: drop what is queued (closing its fds); the
        // reader sees the error.
        outq_.clear();
        writer_done_ = true;
        boost::system::error_code ignored;
        sock_.close(ignored);
        co_return;
      }
    }
    if (closing_) {
      writer_done_ = true;
      boost::system::error_code ignored;
      sock_.shutdown(local_socket::shutdown_both, ignored);
      sock_.close(ignored);
      co_return;
    }
    co_await wake_.async_wait(tuple_awaitable);  // cancelled by enqueue() or closing
  }
}

// Sends one frame; an fd goes as SCM_RIGHTS with the first byte(s).
awaitable<bool> session::send(outgoing_frame& o) {
  std::size_t sent = 0;
  if (o.fd) {
    sent = co_await send_with_fd(o);
    o.fd.reset();  // the peer holds its own copy now (or never will)
    if (sent == 0) co_return false;
  }
  if (sent < o.bytes.size()) {
    auto [ec, n] = co_await asio::async_write(
        sock_, asio::buffer(o.bytes.data() + sent, o.bytes.size() - sent), tuple_awaitable);
    if (ec) co_return false;
  }
  co_return true;
}

// One sendmsg() carrying o.fd and as many of o.bytes as the socket takes.
// Returns the bytes sent; 0 when the socket failed.
awaitable<std::size_t> session::send_with_fd(outgoing_frame& o) {
  for (;;) {
    auto [ec] = co_await sock_.async_wait(local_socket::wait_write, tuple_awaitable);
    if (ec) co_return 0;
    const fd_message msg(o.bytes.data(), o.bytes.size(), o.fd.get());
    const ssize_t k = ::sendmsg(sock_.native_handle(), msg.header(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
    co_return k > 0 ? static_cast<std::size_t>(k) : 0;
  }
}

}  // namespace

void start_session(server_state& srv, local_socket sock, owner_id owner) {
  std::make_shared<session>(srv, std::move(sock), owner)->start();
}

}  // namespace xbuf::server
