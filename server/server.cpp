// SPDX-License-Identifier: MIT
//
// server.cpp - sessions, fd passing and the accept loop (the one Asio TU).
#include "server/server.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/experimental/as_tuple.hpp>
#include <cerrno>
#include <cstdarg>
#include <csignal>
#include <cstring>
#include <ctime>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "core/errno_text.hpp"
#include "core/units.hpp"
#include "server/protocol.hpp"

namespace xbuf::server {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using local_socket = asio::local::stream_protocol::socket;
constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);

namespace {



struct client_record {
  std::int32_t pid = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::string name;
};

class session;

// What every session shares. Lives for run_server's duration.
struct server_state {
  memory_manager& mm;
  const server_config& config;
  asio::io_context& ioc;
  asio::thread_pool pool;

  std::atomic<owner_id> next_owner{1};
  std::mutex mutex;                                   // guards the two maps
  std::map<owner_id, client_record> clients;          // for stats
  std::map<owner_id, std::weak_ptr<session>> sessions;  // for shutdown

  server_state(memory_manager& m, const server_config& c, asio::io_context& io)
      : mm(m), config(c), ioc(io), pool(static_cast<std::size_t>(c.worker_threads < 1 ? 1 : c.worker_threads)) {}

  __attribute__((format(printf, 2, 3))) void log(const char* fmt, ...) const {
    if (!config.log) return;
    std::va_list ap;
    va_start(ap, fmt);
    std::fprintf(stderr, "xbufd: ");
    std::vfprintf(stderr, fmt, ap);
    std::fputc('\n', stderr);
    va_end(ap);
  }
};

// Runs `f` (a blocking manager call) on the worker pool and completes on
// the awaiting coroutine's executor (the session strand) with its result,
// wrapped in an optional because result<T> is not default-constructible.
// Callers name the closure first (see job_N below), then co_await on_pool.
//
// Not a coroutine taking `f`: GCC 12 relocates closure-type coroutine
// parameters bitwise (a std::string inside was freed twice), so the closure
// travels through async_initiate and plain handlers instead.
template <class F>
auto on_pool(server_state& srv, F f) {
  using R = std::invoke_result_t<F>;
  return asio::async_initiate<decltype(use_awaitable), void(std::optional<R>)>(
      [&srv](auto handler, F fn) {
        auto ex = asio::get_associated_executor(handler);
        asio::post(srv.pool, [handler = std::move(handler), fn = std::move(fn), ex]() mutable {
          std::optional<R> r(fn());
          asio::post(ex, [handler = std::move(handler), r = std::move(r)]() mutable {
            std::move(handler)(std::move(r));
          });
        });
      },
      use_awaitable, std::move(f));
}

struct outgoing {
  std::vector<std::uint8_t> bytes;
  int fd = -1;  // owned; sent as SCM_RIGHTS with the first bytes, then closed
};

class session : public std::enable_shared_from_this<session> {
 public:
  session(server_state& srv, local_socket sock, owner_id owner)
      : srv_(srv), sock_(std::move(sock)), wake_(sock_.get_executor()), owner_(owner),
        fence_context_(fence::allocate_context()) {
    wake_.expires_at(asio::steady_timer::time_point::max());
  }

  // Completion of the session's coroutines: an exception that escaped is
  // logged here - the last stop before the io_context.
  auto report(const char* what) {
    return [this_srv = &srv_, what, owner = owner_](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        this_srv->log("client %u: %s stopped by exception: %s", owner, what, ex.what());
      }
    };
  }

  void start() {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(sock_.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      record_.pid = cred.pid;
      record_.uid = cred.uid;
      record_.gid = cred.gid;
    }
    {
      std::lock_guard lock(srv_.mutex);
      srv_.clients[owner_] = record_;
      srv_.sessions[owner_] = weak_from_this();
    }
    srv_.log("client %u connected (pid %d uid %u gid %u)", owner_, record_.pid, record_.uid, record_.gid);
    auto self = shared_from_this();
    asio::co_spawn(sock_.get_executor(), [self] { return self->reader(); }, report("reader"));
    asio::co_spawn(sock_.get_executor(), [self] { return self->writer(); }, report("writer"));
  }

  // Stage one of shutdown. Context: any thread.
  void cancel() {
    cancel_->cancel();  // thread-safe: wakes a manager call blocked on this session's behalf
    asio::post(sock_.get_executor(), [self = shared_from_this()] {
      boost::system::error_code ignored;
      self->sock_.close(ignored);
      self->closing_ = true;
      self->wake_.cancel();
    });
  }

 private:
  // While a request is handled the reader does not read, so a client that
  // hangs up then would only be noticed once the request ends - never, if
  // it waits on the client's own fence. This watch sees the socket become
  // readable: end of stream cancels the session's blocking calls; data (a
  // pipelined request) is left for the reader and the watch is re-armed
  // before the next request. Strand only.
  void watch_hangup() {
    if (watching_ || closing_) return;
    watching_ = true;
    sock_.async_wait(local_socket::wait_read, [w = weak_from_this()](boost::system::error_code ec) {
      auto self = w.lock();
      if (!self) return;
      self->watching_ = false;
      if (ec) return;  // closed or cancelled
      char byte = 0;
      if (::recv(self->sock_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
        self->cancel_->cancel();  // end of stream: the client is gone
      }
    });
  }

  // Queues a frame. Strand only.
  void enqueue(outgoing o) {
    if (writer_done_) {
      if (o.fd >= 0) ::close(o.fd);
      return;
    }
    outq_.push_back(std::move(o));
    wake_.cancel();
  }
  template <class E>
  void post_event(const E& ev) {
    asio::post(sock_.get_executor(), [w = weak_from_this(), bytes = wire::encode_message(0, ev)]() mutable {
      if (auto s = w.lock()) s->enqueue(outgoing{std::move(bytes), -1});
    });
  }

  awaitable<void> reader() {
    std::array<std::uint8_t, 16 * 1024> buf{};  // each read is bounded; frames by max_payload
    bool clean = true;
    for (;;) {
      auto [ec, n] = co_await sock_.async_read_some(asio::buffer(buf), tuple_awaitable);
      if (ec) {
        auto end = parser_.finish();
        if (end.status == wire::parse_status::bad && ec == asio::error::eof) {
          srv_.log("client %u: %s", owner_, end.error.c_str());
        }
        break;
      }
      parser_.feed(std::span<const std::uint8_t>(buf.data(), n));
      bool stop = false;
      while (!stop) {
        auto r = parser_.next();
        if (r.status == wire::parse_status::need_more) break;
        if (r.status == wire::parse_status::bad) {
          srv_.log("client %u: protocol error, closing: %s", owner_, r.error.c_str());
          if (r.request_id) {
            enqueue({wire::encode_error_reply(r.type, *r.request_id, fail(errc::protocol_error, r.error)), -1});
          }
          clean = false;
          stop = true;
          break;
        }
        watch_hangup();
        co_await handle(r.frame_);
      }
      if (stop) break;
    }
    closing_ = true;
    wake_.cancel();
    co_await release(clean);
  }

  // Stage two for this session: forget its fences' callbacks (they post to
  // this strand) and release its owner on the pool.
  awaitable<void> release(bool clean) {
    auto fences = std::move(fences_);
    const owner_id owner = owner_;
    memory_manager& mm = srv_.mm;
    auto job_1 = [&mm, owner, fences = std::move(fences)]() mutable {
      for (auto& [id, f] : fences) {
        if (f.callback) f.f->remove_callback(*f.callback);
      }
      return mm.release_owner(owner);
    };
    auto res_1 = *co_await on_pool(srv_, std::move(job_1));
    const std::size_t freed = std::move(res_1);
    {
      std::lock_guard lock(srv_.mutex);
      srv_.clients.erase(owner_);
      srv_.sessions.erase(owner_);
    }
    srv_.log("client %u (pid %d, '%s') disconnected%s: released %zu buffers", owner_, record_.pid,
             record_.name.c_str(), clean ? "" : " after a protocol error", freed);
  }

  awaitable<void> writer() {
    for (;;) {
      while (!outq_.empty()) {
        outgoing o = std::move(outq_.front());
        outq_.pop_front();
        const bool ok = co_await send(o);
        if (!ok) {
          // The peer is gone: drop what is queued; the reader sees the error.
          for (auto& q : outq_) {
            if (q.fd >= 0) ::close(q.fd);
          }
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
  awaitable<bool> send(outgoing& o) {
    std::size_t sent = 0;
    if (o.fd >= 0) {
      for (;;) {
        auto [ec] = co_await sock_.async_wait(local_socket::wait_write, tuple_awaitable);
        if (ec) break;
        iovec iov{o.bytes.data(), o.bytes.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))]{};
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof control;
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &o.fd, sizeof(int));
        const ssize_t k = ::sendmsg(sock_.native_handle(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
        if (k > 0) sent = static_cast<std::size_t>(k);
        break;
      }
      ::close(o.fd);  // the peer holds its own copy now (or never will)
      o.fd = -1;
      if (sent == 0) co_return false;
    }
    if (sent < o.bytes.size()) {
      auto [ec, n] = co_await asio::async_write(
          sock_, asio::buffer(o.bytes.data() + sent, o.bytes.size() - sent), tuple_awaitable);
      if (ec) co_return false;
    }
    co_return true;
  }

  template <class R>
  void reply(const wire::frame& f, const R& r) {
    enqueue({wire::encode_reply(static_cast<wire::msg_type>(f.header.type), f.header.request_id, r), -1});
  }

  // One request, start to reply. Exceptions stop here and become a status.
  awaitable<void> handle(const wire::frame& f) {
    std::string failure;
    try {
      co_await dispatch(f);
      co_return;
    } catch (const std::exception& e) {
      failure = e.what();
    }
    enqueue({wire::encode_error_reply(f.header.type, f.header.request_id,
                                      fail(errc::io_error, "xbufd internal error: " + failure)),
             -1});
  }

  template <class M>
  static result<M> decode(const wire::frame& f) {
    return wire::decode_message<M>(f);
  }

  awaitable<void> dispatch(const wire::frame& f) {
    using wire::msg_type;
    const auto type = static_cast<msg_type>(f.header.type);
    if (type == msg_type::hello) {
      auto m = decode<wire::hello_request>(f);
      if (!m) co_return reply(f, result<wire::hello_reply>(m.err()));
      if (m->version != wire::protocol_version) {
        co_return reply(f, result<wire::hello_reply>(fail(
                               errc::unsupported, "hello: client speaks version " + std::to_string(m->version) +
                                                      ", xbufd speaks " +
                                                      std::to_string(wire::protocol_version))));
      }
      hello_ = true;
      record_.name = m->client_name.substr(0, 64);
      {
        std::lock_guard lock(srv_.mutex);
        srv_.clients[owner_].name = record_.name;
      }
      srv_.log("client %u is '%s'", owner_, record_.name.c_str());
      co_return reply(f, result<wire::hello_reply>(wire::hello_reply{.owner = owner_}));
    }
    if (!hello_) {
      co_return enqueue({wire::encode_error_reply(f.header.type, f.header.request_id,
                                                  fail(errc::bad_state, wire::type_name(f.header.type) +
                                                                            ": send hello first")),
                         -1});
    }
    memory_manager& mm = srv_.mm;
    const owner_id owner = owner_;
    switch (type) {
      case msg_type::alloc: {
        auto m = decode<wire::alloc_request>(f);
        if (!m) co_return reply(f, result<wire::buffer_reply>(m.err()));
        if ((m->flags & ~wire::alloc_known_flags) != 0) {
          co_return reply(f, result<wire::buffer_reply>(fail(
                                 errc::invalid_argument, "alloc: unknown flags " + std::to_string(m->flags))));
        }
        xbuf::alloc_request req;
        req.size = m->size;
        req.alignment = m->alignment;
        req.placements = m->placements;
        req.cpu_access = (m->flags & wire::alloc_flag_cpu_access) != 0;
        req.no_evict = (m->flags & wire::alloc_flag_no_evict) != 0;
        req.name = m->name;
        req.cancel = cancel_.get();
        auto job_2 = [&mm, owner, req, tok = cancel_] { return mm.allocate(owner, req); };
        auto res_2 = *co_await on_pool(srv_, std::move(job_2));
        auto r = std::move(res_2);
        if (!r) co_return reply(f, result<wire::buffer_reply>(r.err()));
        co_return reply(f, result<wire::buffer_reply>(wire::buffer_reply{*r}));
      }
      case msg_type::free: {
        auto m = decode<wire::free_request>(f);
        if (!m) co_return reply(f, status(m.err()));
        auto job_3 = [&mm, owner, id = m->id] { return mm.free(owner, id); };
        auto res_3 = *co_await on_pool(srv_, std::move(job_3));
        co_return reply(f, std::move(res_3));
      }
      case msg_type::share: {
        auto m = decode<wire::share_request>(f);
        if (!m) co_return reply(f, status(m.err()));
        auto job_4 = [&mm, owner, m = *m] { return mm.share(owner, m.buffer, m.with); };
        auto res_4 = *co_await on_pool(srv_, std::move(job_4));
        co_return reply(f, std::move(res_4));
      }
      case msg_type::export_fd: {
        auto m = decode<wire::export_request>(f);
        if (!m) co_return reply(f, result<wire::export_reply>(m.err()));
        auto job_5 = [&mm, owner, id = m->id] { return mm.export_fd(owner, id); };
        auto res_5 = *co_await on_pool(srv_, std::move(job_5));
        auto r = std::move(res_5);
        if (!r) co_return reply(f, result<wire::export_reply>(r.err()));
        wire::export_reply body{.offset = r->offset, .size = r->size, .kind = r->kind};
        co_return enqueue({wire::encode_reply(type, f.header.request_id, result<wire::export_reply>(body)), r->fd});
      }
      case msg_type::attach: {
        auto m = decode<wire::attach_request>(f);
        if (!m) co_return reply(f, result<wire::attach_reply>(m.err()));
        xbuf::attach_request req;
        req.device = m->device;
        req.mode = m->mode;
        req.peer_capable = m->peer_capable;
        // Called under the manager's locks: only post the event.
        req.move_notify = [w = weak_from_this(), ex = sock_.get_executor()](const move_notice& n) {
          wire::move_notify_event ev{.attachment = n.attachment, .buffer = n.buffer, .from = n.from, .to = n.to};
          asio::post(ex, [w, bytes = wire::encode_message(0, ev)]() mutable {
            if (auto s = w.lock()) s->enqueue(outgoing{std::move(bytes), -1});
          });
        };
        auto job_6 = [&mm, owner, id = m->buffer, req, tok = cancel_] { return mm.attach(owner, id, req, tok.get()); };
        auto res_6 = *co_await on_pool(srv_, std::move(job_6));
        auto r = std::move(res_6);
        if (!r) co_return reply(f, result<wire::attach_reply>(r.err()));
        co_return reply(f, result<wire::attach_reply>(wire::attach_reply{*r}));
      }
      case msg_type::detach: {
        auto m = decode<wire::detach_request>(f);
        if (!m) co_return reply(f, status(m.err()));
        auto job_7 = [&mm, owner, id = m->id] { return mm.detach(owner, id); };
        auto res_7 = *co_await on_pool(srv_, std::move(job_7));
        co_return reply(f, std::move(res_7));
      }
      case msg_type::map: {
        auto m = decode<wire::map_request>(f);
        if (!m) co_return reply(f, result<wire::map_reply>(m.err()));
        auto job_8 = [&mm, owner, id = m->attachment, tok = cancel_] { return mm.map(owner, id, tok.get()); };
        auto res_8 = *co_await on_pool(srv_, std::move(job_8));
        auto r = std::move(res_8);
        if (!r) co_return reply(f, result<wire::map_reply>(r.err()));
        wire::map_reply body{.where = r->where, .ranges = {}, .peer = r->peer, .reason = r->reason, .generation = r->generation};
        for (const auto& a : r->ranges) body.ranges.push_back({a.address, a.size});
        if (r->wait_for && !r->wait_for->is_signaled()) body.wait_fence = track_fence(r->wait_for, false);
        co_return reply(f, result<wire::map_reply>(body));
      }
      case msg_type::unmap: {
        auto m = decode<wire::unmap_request>(f);
        if (!m) co_return reply(f, status(m.err()));
        auto job_9 = [&mm, owner, id = m->id] { return mm.unmap(owner, id); };
        auto res_9 = *co_await on_pool(srv_, std::move(job_9));
        co_return reply(f, std::move(res_9));
      }
      case msg_type::add_client_fence: {
        auto m = decode<wire::add_client_fence_request>(f);
        if (!m) co_return reply(f, result<wire::fence_reply>(m.err()));
        auto fc = fence::create(fence_context_, ++fence_seqno_);
        std::optional<fence_clock::time_point> deadline;
        if (m->deadline_ms > 0) deadline = fence_clock::now() + std::chrono::milliseconds(m->deadline_ms);
        auto job_10 = [&mm, owner, m = *m, fc, deadline] {
          return mm.add_fence(owner, m.buffer, fc, m.usage, deadline);
        };
        auto res_10 = *co_await on_pool(srv_, std::move(job_10));
        auto r = std::move(res_10);
        if (!r) co_return reply(f, result<wire::fence_reply>(r.err()));
        co_return reply(f, result<wire::fence_reply>(wire::fence_reply{track_fence(fc, true)}));
      }
      case msg_type::signal_client_fence: {
        auto m = decode<wire::signal_client_fence_request>(f);
        if (!m) co_return reply(f, status(m.err()));
        auto it = fences_.find(m->fence);
        if (it == fences_.end()) {
          co_return reply(f, status(fail(errc::not_found, "fence " + std::to_string(m->fence) + ": unknown to this client")));
        }
        if (!it->second.client) {
          co_return reply(f, status(fail(errc::permission_denied, "fence " + std::to_string(m->fence) +
                                                                      ": made by xbufd (a move), not by this client")));
        }
        if (m->error > 0 || m->error < -4095) {
          co_return reply(f, status(fail(errc::invalid_argument, "fence " + std::to_string(m->fence) + ": error " +
                                                                     std::to_string(m->error) + " is not 0 or a negative errno")));
        }
        // Signaling runs callbacks (the manager's among them): off the io thread.
        auto job_11 = [fc = it->second.f, e = m->error] { return fc->signal(e); };
        auto res_11 = *co_await on_pool(srv_, std::move(job_11));
        co_return reply(f, std::move(res_11));
      }
      case msg_type::wait: {
        auto m = decode<wire::wait_request>(f);
        if (!m) co_return reply(f, result<wire::wait_reply>(m.err()));
        co_return reply(f, co_await wait_fence(m->fence, m->timeout_ms));
      }
      case msg_type::validate: {
        auto m = decode<wire::validate_request>(f);
        if (!m) co_return reply(f, result<wire::validate_reply>(m.err()));
        auto job_12 = [&mm, owner, ids = m->buffers, tok = cancel_] { return mm.validate(owner, ids, tok.get()); };
        auto res_12 = *co_await on_pool(srv_, std::move(job_12));
        auto r = std::move(res_12);
        if (!r) co_return reply(f, result<wire::validate_reply>(r.err()));
        co_return reply(f, result<wire::validate_reply>(wire::validate_reply{
                               .promoted = static_cast<std::uint32_t>(r->promoted),
                               .deferred = static_cast<std::uint32_t>(r->deferred),
                               .in_place = static_cast<std::uint32_t>(r->in_place),
                               .no_room = static_cast<std::uint32_t>(r->no_room)}));
      }
      case msg_type::cpu_begin: {
        auto m = decode<wire::cpu_begin_request>(f);
        if (!m) co_return reply(f, result<wire::cpu_begin_reply>(m.err()));
        const fence_clock::duration timeout =
            m->timeout_ms == 0 ? wait_forever : std::chrono::milliseconds(m->timeout_ms);
        auto job_13 = [&mm, owner, m = *m, timeout, tok = cancel_] {
          return mm.begin_cpu_access(owner, m.buffer, m.write ? cpu_access_mode::write : cpu_access_mode::read,
                                     timeout, tok.get());
        };
        auto res_13 = *co_await on_pool(srv_, std::move(job_13));
        auto r = std::move(res_13);
        if (!r) co_return reply(f, result<wire::cpu_begin_reply>(r.err()));
        co_return reply(f, result<wire::cpu_begin_reply>(wire::cpu_begin_reply{r->size}));
      }
      case msg_type::cpu_end: {
        auto m = decode<wire::cpu_end_request>(f);
        if (!m) co_return reply(f, status(m.err()));
        auto job_14 = [&mm, owner, id = m->id] { return mm.end_cpu_access(owner, id); };
        auto res_14 = *co_await on_pool(srv_, std::move(job_14));
        co_return reply(f, std::move(res_14));
      }
      case msg_type::stats: {
        auto m = decode<wire::stats_request>(f);
        if (!m) co_return reply(f, result<wire::stats_reply>(m.err()));
        co_return reply(f, result<wire::stats_reply>(co_await collect_stats(srv_)));
      }
      default:
        break;
    }
    // The parser only passes request types; this is a type it knows but no
    // handler does (a newer request in an older daemon).
    co_return enqueue({wire::encode_error_reply(f.header.type, f.header.request_id,
                                                fail(errc::unsupported, wire::type_name(f.header.type) +
                                                                            ": not implemented by this xbufd")),
                       -1});
  }

  // Remembers `fc` under a new id and reports its signal as an event.
  // Strand only.
  std::uint64_t track_fence(const fence_ptr& fc, bool client) {
    const std::uint64_t id = next_fence_id_++;
    tracked t{.f = fc, .client = client, .callback = std::nullopt};
    auto cb = fc->add_callback([w = weak_from_this(), ex = sock_.get_executor(), id](const fence& done) {
      wire::fence_signaled_event ev{.fence = id, .error = done.error()};
      asio::post(ex, [w, bytes = wire::encode_message(0, ev)]() mutable {
        if (auto s = w.lock()) s->enqueue(outgoing{std::move(bytes), -1});
      });
    });
    if (cb) t.callback = *cb;
    fences_.emplace(id, std::move(t));
    return id;
  }

  // Waits without blocking the strand: the fence's callback posts to the
  // strand and cancels a timer that otherwise expires at the timeout.
  awaitable<result<wire::wait_reply>> wait_fence(std::uint64_t id, std::uint32_t timeout_ms) {
    auto it = fences_.find(id);
    if (it == fences_.end()) {
      co_return fail(errc::not_found, "fence " + std::to_string(id) + ": unknown to this client");
    }
    fence_ptr fc = it->second.f;
    if (!fc->is_signaled() && timeout_ms > 0) {
      auto timer = std::make_shared<asio::steady_timer>(sock_.get_executor());
      timer->expires_after(std::chrono::milliseconds(timeout_ms));
      auto cb = fc->add_callback([timer, ex = sock_.get_executor()](const fence&) {
        asio::post(ex, [timer] { timer->cancel(); });
      });
      // Shutdown or a hang-up ends the wait too (the waker only posts).
      cancel_token::scoped_waker on_cancel(cancel_.get(), [timer, ex = sock_.get_executor()] {
        asio::post(ex, [timer] { timer->cancel(); });
      });
      if (cb && !cancel_->cancelled()) {
        co_await timer->async_wait(tuple_awaitable);
        // The callback only posts; if it is running right now this returns
        // as soon as that post is done.
        fc->remove_callback(*cb);
      }
    }
    if (!fc->is_signaled()) {
      co_return fail(errc::timed_out, "fence " + std::to_string(id) + ": not signaled after " +
                                          std::to_string(timeout_ms) + " ms");
    }
    co_return wire::wait_reply{.fence_error = fc->error()};
  }

 public:
  static awaitable<wire::stats_reply> collect_stats(server_state& srv) {
    memory_manager& mm = srv.mm;
    auto job_15 = [&mm] { return std::make_pair(mm.stats(), mm.buffers()); };
    auto res_15 = *co_await on_pool(srv, std::move(job_15));
    auto both = std::move(res_15);
    const manager_stats& st = both.first;
    wire::stats_reply out;
    out.backend = std::string(mm.device_backend().name());
    for (const auto& d : st.domains) {
      out.domains.push_back({.name = d.name, .where = d.where, .capacity = d.capacity, .used = d.used,
                             .delayed_free_bytes = d.delayed_free_bytes,
                             .buffers = static_cast<std::uint32_t>(d.buffers)});
    }
    {
      std::lock_guard lock(srv.mutex);
      for (const auto& [id, c] : srv.clients) {
        wire::stat_client sc{.owner = id, .pid = c.pid, .uid = c.uid, .name = c.name};
        for (const auto& o : st.owners) {
          if (o.owner == id) {
            sc.bytes = o.bytes;
            sc.buffers = static_cast<std::uint32_t>(o.buffers);
          }
        }
        out.clients.push_back(std::move(sc));
      }
    }
    // Keep the reply inside one frame: stop listing buffers at ~48 KiB.
    std::size_t budget = 48 * 1024;
    for (const auto& b : both.second) {
      const std::size_t cost = 80 + b.name.size();
      if (cost > budget) {
        out.buffers_truncated = true;
        break;
      }
      budget -= cost;
      out.buffers.push_back({.id = b.id, .owner = b.owner, .name = b.name, .size = b.size, .where = b.where,
                             .attachments = static_cast<std::uint32_t>(b.attachments), .pins = b.pins,
                             .fences = static_cast<std::uint32_t>(b.fences), .generation = b.generation,
                             .lost = b.lost});
    }
    const auto& c = st.counters;
    out.counters = {{"allocations", c.allocations},   {"frees", c.frees},
                    {"evictions", c.evictions},       {"moves", c.moves},
                    {"bytes_moved", c.bytes_moved},   {"move_notifies", c.move_notifies},
                    {"delayed_frees", c.delayed_frees}, {"failed_moves", c.failed_moves},
                    {"promotions", c.promotions},     {"allocation_failures", c.allocation_failures},
                    {"pinned_bytes", st.pinned_bytes}, {"pinned_limit", st.pinned_limit}};
    co_return out;
  }

 private:
  struct tracked {
    fence_ptr f;
    bool client = false;                       // made by add_client_fence: the client may signal it
    std::optional<fence::callback_id> callback;  // posts fence_signaled
  };

  server_state& srv_;
  local_socket sock_;            // its executor is this session's strand
  asio::steady_timer wake_;      // the writer's condition variable
  const owner_id owner_;
  const std::uint64_t fence_context_;
  client_record record_;
  wire::frame_parser parser_{true};
  bool hello_ = false;
  bool closing_ = false;         // the reader is done: flush and close
  bool writer_done_ = false;
  bool watching_ = false;        // watch_hangup() is armed
  std::deque<outgoing> outq_;
  std::map<std::uint64_t, tracked> fences_;
  std::uint64_t next_fence_id_ = 1;
  std::uint64_t fence_seqno_ = 0;
  // Cancels this session's blocking manager calls (evictions, CPU-access
  // waits, buffer locks) when the daemon shuts down, so a pool job never
  // outlives the session's reason to exist. Shared: pool jobs keep it alive.
  std::shared_ptr<cancel_token> cancel_ = std::make_shared<cancel_token>();
};

void print_status(const wire::stats_reply& s) {
  char when[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%H:%M:%S", &tm);
  std::printf("---- xbufd %s  backend %s  clients %zu  buffers %zu ----\n", when, s.backend.c_str(),
              s.clients.size(), s.buffers.size());
  for (const auto& d : s.domains) {
    const double pct = d.capacity ? 100.0 * static_cast<double>(d.used) / static_cast<double>(d.capacity) : 0.0;
    std::printf("  %-10s %10s / %-10s %5.1f%%  %u buffers  %s delayed\n", d.name.c_str(),
                format_bytes(d.used).c_str(), format_bytes(d.capacity).c_str(), pct, d.buffers,
                format_bytes(d.delayed_free_bytes).c_str());
  }
  for (const auto& c : s.clients) {
    std::printf("  client %-4u pid %-7d %-16s %10s in %u buffers\n", c.owner, c.pid, c.name.c_str(),
                format_bytes(c.bytes).c_str(), c.buffers);
  }
  std::printf("  ");
  for (const auto& c : s.counters) std::printf("%s %llu  ", c.name.c_str(), static_cast<unsigned long long>(c.value));
  std::printf("\n");
  std::fflush(stdout);
}

awaitable<void> stats_loop(server_state& srv, asio::steady_timer& timer) {
  for (;;) {
    timer.expires_after(std::chrono::seconds(srv.config.stats_interval_s));
    auto [ec] = co_await timer.async_wait(tuple_awaitable);
    if (ec) co_return;
    print_status(co_await session::collect_stats(srv));
  }
}

awaitable<void> accept_loop(server_state& srv, asio::local::stream_protocol::acceptor& acceptor) {
  for (;;) {
    auto [ec, sock] = co_await acceptor.async_accept(asio::make_strand(srv.ioc), tuple_awaitable);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      srv.log("accept: %s", ec.message().c_str());
      continue;
    }
    const owner_id owner = srv.next_owner.fetch_add(1);
    std::make_shared<session>(srv, std::move(sock), owner)->start();
  }
}

// Binds the listening socket, replacing a stale socket file.
result<int> bind_socket(const server_config& cfg) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (cfg.socket_path.empty() || cfg.socket_path.size() >= sizeof addr.sun_path) {
    return fail(errc::invalid_argument, "socket path '" + cfg.socket_path + "': empty or longer than " +
                                            std::to_string(sizeof addr.sun_path - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, cfg.socket_path.c_str(), cfg.socket_path.size() + 1);
  const auto* sa = reinterpret_cast<const sockaddr*>(&addr);

  struct stat st{};
  if (::lstat(cfg.socket_path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return fail(errc::already_exists, "socket path '" + cfg.socket_path + "': exists and is not a socket");
    }
    const int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0) {
      const bool live = ::connect(probe, sa, sizeof addr) == 0;
      ::close(probe);
      if (live) {
        return fail(errc::already_exists, "socket path '" + cfg.socket_path + "': another xbufd is listening");
      }
    }
    ::unlink(cfg.socket_path.c_str());  // stale: its daemon is gone
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(errc::io_error, "socket(): " + errno_text(errno));
  if (::bind(fd, sa, sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(errc::io_error, "bind '" + cfg.socket_path + "': " + errno_text(e));
  }
  if (::chmod(cfg.socket_path.c_str(), cfg.socket_mode) != 0 || ::listen(fd, 64) != 0) {
    const int e = errno;
    ::close(fd);
    ::unlink(cfg.socket_path.c_str());
    return fail(errc::io_error, "chmod/listen '" + cfg.socket_path + "': " + errno_text(e));
  }
  return fd;
}

}  // namespace

status run_server(memory_manager& mm, const server_config& config) {
  auto fd = bind_socket(config);
  if (!fd) return std::move(fd).err();
  std::signal(SIGPIPE, SIG_IGN);  // a vanished peer is an error value, not a signal

  asio::io_context ioc(1);
  server_state srv(mm, config, ioc);
  asio::local::stream_protocol::acceptor acceptor(ioc);
  try {
    acceptor.assign(asio::local::stream_protocol(), *fd);
  } catch (const std::exception& e) {
    ::close(*fd);
    return fail(errc::io_error, std::string("acceptor: ") + e.what());
  }
  srv.log("listening on %s (mode %o)", config.socket_path.c_str(), config.socket_mode);

  asio::steady_timer stats_timer(ioc);
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    srv.log("signal %d: shutting down", sig);
    // Stage one: no new clients, every session cancelled. Stage two happens
    // by itself: each session releases its owner, and run() returns when
    // nothing is left.
    boost::system::error_code ignored;
    acceptor.close(ignored);
    stats_timer.cancel();
    std::vector<std::shared_ptr<session>> live;
    {
      std::lock_guard lock(srv.mutex);
      for (auto& [id, w] : srv.sessions) {
        if (auto s = w.lock()) live.push_back(std::move(s));
      }
    }
    for (auto& s : live) s->cancel();
  });
  auto log_exception = [&srv](const char* what) {
    return [&srv, what](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        srv.log("%s stopped by exception: %s", what, ex.what());
      }
    };
  };
  asio::co_spawn(ioc, accept_loop(srv, acceptor), log_exception("accept loop"));
  if (config.stats_interval_s > 0) {
    asio::co_spawn(ioc, stats_loop(srv, stats_timer), log_exception("stats"));
  }
  for (;;) {
    try {
      ioc.run();
      break;
    } catch (const std::exception& e) {
      srv.log("io_context: %s", e.what());
    }
  }
  srv.pool.join();
  ::unlink(config.socket_path.c_str());
  srv.log("stopped");
  return ok();
}

}  // namespace xbuf::server
