// SPDX-License-Identifier: MIT
#include "client/remote_client.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "core/errno_text.hpp"
#include "core/fd_message.hpp"
#include "core/whole_number.hpp"

namespace xbuf::client {

namespace {

// The uid the caller trusts besides root and its own: the option, else
// $XBUF_SERVER_UID. Errors: invalid_argument (not a decimal uid).
result<std::optional<std::uint32_t>> trusted_server_uid(const connect_options& o) {
  if (o.server_uid) return o.server_uid;
  const char* e = std::getenv("XBUF_SERVER_UID");
  if (e == nullptr || *e == '\0') return std::optional<std::uint32_t>{};
  // 0xffffffff is (uid_t)-1, "no uid": not one to trust.
  const auto v = parse_whole_number(e, 0, 0xfffffffeull);
  if (!v) {
    return fail(errc::invalid_argument, std::string("XBUF_SERVER_UID '") + e + "': not a uid (a decimal number)");
  }
  return std::optional<std::uint32_t>(static_cast<std::uint32_t>(*v));
}

// Before the hello leaves: is the process that listens on `fd` one we trust?
status check_server(int fd, const std::string& path, const connect_options& o) {
  auto trusted = trusted_server_uid(o);
  if (!trusted) return std::move(trusted).err();
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return fail(errc::io_error, "xbufd at '" + path + "': SO_PEERCRED: " + errno_text(errno));
  }
  if (cred.uid == 0 || cred.uid == ::getuid() || cred.uid == ::geteuid() || (*trusted && cred.uid == **trusted)) {
    return ok();
  }
  return fail(errc::permission_denied,
              "xbufd at '" + path + "' runs as uid " + std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid) +
                  "), not root, this process's uid " + std::to_string(::geteuid()) +
                  (*trusted ? " or the trusted uid " + std::to_string(**trusted) : std::string()) +
                  ": not talking to it (whoever binds a socket path first can pose as xbufd; set XBUF_SERVER_UID=" +
                  std::to_string(cred.uid) + " if that daemon is the one you mean)");
}

}  // namespace

remote_client::remote_client(int fd) : fd_(fd), parser_(std::make_unique<wire::frame_parser>(false)) {}

remote_client::remote_client(remote_client&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), owner_(o.owner_), next_id_(o.next_id_), parser_(std::move(o.parser_)),
      fds_(std::exchange(o.fds_, {})), broken_(std::move(o.broken_)), move_notify_(std::move(o.move_notify_)),
      fence_signaled_(std::move(o.fence_signaled_)), memory_pressure_(std::move(o.memory_pressure_)) {}

remote_client& remote_client::operator=(remote_client&& o) noexcept {
  if (this != &o) {
    close_all();
    fd_ = std::exchange(o.fd_, -1);
    owner_ = o.owner_;
    next_id_ = o.next_id_;
    parser_ = std::move(o.parser_);
    fds_ = std::move(o.fds_);
    o.fds_.clear();
    broken_ = std::move(o.broken_);
    move_notify_ = std::move(o.move_notify_);
    fence_signaled_ = std::move(o.fence_signaled_);
    memory_pressure_ = std::move(o.memory_pressure_);
  }
  return *this;
}

remote_client::~remote_client() { close_all(); }

void remote_client::close_all() noexcept {
  for (int f : fds_) ::close(f);
  fds_.clear();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

result<remote_client> remote_client::connect(const std::string& socket_path, const std::string& client_name,
                                             const connect_options& options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.empty() || socket_path.size() >= sizeof addr.sun_path) {
    return fail(errc::invalid_argument, "socket path '" + socket_path + "': empty or too long");
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(errc::io_error, "socket(): " + errno_text(errno));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    return fail(errc::io_error, "connect to xbufd at '" + socket_path + "': " + errno_text(e));
  }
  if (auto s = check_server(fd, socket_path, options); !s) {
    ::close(fd);
    return std::move(s).err();
  }
  remote_client c(fd);
  auto h = c.call<wire::hello_reply>(wire::hello_request{.version = wire::protocol_version,
                                                         .client_name = client_name});
  if (!h) return std::move(h).err().prefixed("hello");
  c.owner_ = h->owner;
  return c;
}

error remote_client::broken(error e) {
  if (!broken_) broken_ = e;
  return e;
}

status remote_client::send_raw(std::span<const std::uint8_t> bytes) {
  if (broken_) return *broken_;
  std::size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t k = ::send(fd_, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return broken(fail(errc::io_error, "send to xbufd: " + errno_text(errno)));
    off += static_cast<std::size_t>(k);
  }
  return ok();
}

status remote_client::send_with_fd(std::span<const std::uint8_t> bytes, int fd) {
  if (broken_) return *broken_;
  // The fd rides on the first bytes; whatever the socket did not take
  // follows as plain bytes.
  const fd_message msg(bytes.data(), bytes.size(), fd);
  ssize_t k = 0;
  do {
    k = ::sendmsg(fd_, msg.header(), MSG_NOSIGNAL);
  } while (k < 0 && errno == EINTR);
  if (k <= 0) return broken(fail(errc::io_error, "send to xbufd: " + errno_text(errno)));
  return send_raw(bytes.subspan(static_cast<std::size_t>(k)));
}

result<wire::import_reply> remote_client::import_fd(int fd) {
  if (broken_) return fail(errc::io_error, "connection to xbufd unusable: " + broken_->message);
  if (fd < 0) return fail(errc::invalid_argument, "import: fd " + std::to_string(fd) + " is not a descriptor");
  const std::uint64_t id = next_id_++;
  if (auto s = send_with_fd(wire::encode_message(id, wire::import_request{}), fd); !s) return std::move(s).err();
  auto f = read_reply(id);
  if (!f) return std::move(f).err();
  auto r = wire::decode_reply<wire::import_reply>(wire::msg_type::import_fd, *f);
  if (!r && r.code() == errc::protocol_error) broken(r.err());
  return r;
}

result<bool> remote_client::read_some(int timeout_ms) {
  if (timeout_ms >= 0) {
    pollfd p{fd_, POLLIN, 0};
    int n = 0;
    do {
      n = ::poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return broken(fail(errc::io_error, "poll xbufd socket: " + errno_text(errno)));
    if (n == 0) return false;
  }
  std::uint8_t buf[16 * 1024];
  iovec iov{buf, sizeof buf};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)]{};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t k = 0;
  do {
    k = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
  } while (k < 0 && errno == EINTR);
  if (k < 0) return broken(fail(errc::io_error, "recv from xbufd: " + errno_text(errno)));
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const std::size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t i = 0; i < n; ++i) {
        int f = -1;
        std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        fds_.push_back(f);
      }
    }
  }
  if (k == 0) {
    auto end = parser_->finish();
    return broken(fail(errc::io_error, end.status == wire::parse_status::bad
                                           ? "xbufd closed the connection: " + end.error
                                           : std::string("xbufd closed the connection")));
  }
  parser_->feed(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(k)));
  return true;
}

bool remote_client::dispatch_event(const wire::frame& f) {
  if (f.header.type == static_cast<std::uint16_t>(wire::msg_type::move_notify)) {
    auto e = wire::decode_message<wire::move_notify_event>(f);
    if (e && move_notify_) move_notify_(*e);
    return true;
  }
  if (f.header.type == static_cast<std::uint16_t>(wire::msg_type::fence_signaled)) {
    auto e = wire::decode_message<wire::fence_signaled_event>(f);
    if (e && fence_signaled_) fence_signaled_(*e);
    return true;
  }
  if (f.header.type == static_cast<std::uint16_t>(wire::msg_type::memory_pressure)) {
    auto e = wire::decode_message<wire::memory_pressure_event>(f);
    if (e && memory_pressure_) memory_pressure_(*e);
    return true;
  }
  return false;
}

result<wire::frame> remote_client::read_reply(std::uint64_t id) {
  for (;;) {
    auto r = parser_->next();
    if (r.status == wire::parse_status::bad) {
      return broken(fail(errc::protocol_error, "reply from xbufd: " + r.error));
    }
    if (r.status == wire::parse_status::complete) {
      if (dispatch_event(r.frame_)) continue;
      if (r.frame_.header.request_id != id) {
        return broken(fail(errc::protocol_error, "reply from xbufd for request " +
                                                     std::to_string(r.frame_.header.request_id) +
                                                     " while waiting for " + std::to_string(id)));
      }
      return std::move(r.frame_);
    }
    auto more = read_some(-1);
    if (!more) return std::move(more).err();
  }
}

template <class R, class M>
result<R> remote_client::call(const M& request) {
  if (broken_) return fail(errc::io_error, "connection to xbufd unusable: " + broken_->message);
  const std::uint64_t id = next_id_++;
  if (auto s = send_raw(wire::encode_message(id, request)); !s) return std::move(s).err();
  auto f = read_reply(id);
  if (!f) return std::move(f).err();
  auto r = wire::decode_reply<R>(M::type, *f);
  if (!r && r.code() == errc::protocol_error) broken(r.err());
  return r;
}

result<std::size_t> remote_client::poll_events(int timeout_ms) {
  if (broken_) return fail(errc::io_error, "connection to xbufd unusable: " + broken_->message);
  std::size_t n = 0;
  bool first = true;
  for (;;) {
    auto r = parser_->next();
    if (r.status == wire::parse_status::bad) return broken(fail(errc::protocol_error, r.error));
    if (r.status == wire::parse_status::complete) {
      if (!dispatch_event(r.frame_)) {
        return broken(fail(errc::protocol_error, "unsolicited " + wire::type_name(r.frame_.header.type)));
      }
      ++n;
      continue;
    }
    // Wait only once for the first bytes; after that take what is there.
    auto more = read_some(first ? timeout_ms : 0);
    first = false;
    if (!more) return std::move(more).err();
    if (!*more) return n;
  }
}

result<buffer_id> remote_client::alloc(std::uint64_t size, std::vector<placement> placements, std::string name,
                                       std::uint32_t flags, std::uint64_t alignment) {
  auto r = call<wire::buffer_reply>(wire::alloc_request{.size = size, .alignment = alignment,
                                                        .placements = std::move(placements), .flags = flags,
                                                        .name = std::move(name)});
  if (!r) return std::move(r).err();
  return r->buffer;
}

namespace {
status to_status(result<wire::empty_body>&& r) {
  if (!r) return std::move(r).err();
  return ok();
}
}  // namespace

status remote_client::free(buffer_id id) { return to_status(call<wire::empty_body>(wire::free_request{.id = id})); }

status remote_client::release_export(buffer_id id) {
  return to_status(call<wire::empty_body>(wire::release_request{.id = id}));
}

status remote_client::share(buffer_id id, owner_id with) {
  return to_status(call<wire::empty_body>(wire::share_request{.buffer = id, .with = with}));
}

status remote_client::advise(buffer_id id, eviction_hint hint) {
  return to_status(call<wire::empty_body>(wire::advise_request{.id = id, .hint = hint}));
}

result<exported_buffer> remote_client::export_fd(buffer_id id) {
  auto r = call<wire::export_reply>(wire::export_request{.id = id});
  if (!r) return std::move(r).err();
  // The fd came with the reply's bytes, so it is queued by now.
  if (fds_.empty()) return broken(fail(errc::protocol_error, "export reply for buffer " + std::to_string(id) +
                                                                 " came without a file descriptor"));
  const int fd = fds_.front();
  fds_.pop_front();
  return exported_buffer{.fd = fd, .offset = r->offset, .size = r->size, .kind = r->kind};
}

result<attachment_id> remote_client::attach(buffer_id id, int device, attach_mode mode, bool peer_capable) {
  auto r = call<wire::attach_reply>(
      wire::attach_request{.buffer = id, .device = device, .mode = mode, .peer_capable = peer_capable});
  if (!r) return std::move(r).err();
  return r->attachment;
}

status remote_client::detach(attachment_id id) {
  return to_status(call<wire::empty_body>(wire::detach_request{.id = id}));
}

result<wire::map_reply> remote_client::map(attachment_id id) {
  return call<wire::map_reply>(wire::map_request{.attachment = id});
}

status remote_client::unmap(attachment_id id) { return to_status(call<wire::empty_body>(wire::unmap_request{.id = id})); }

result<std::uint64_t> remote_client::add_client_fence(buffer_id id, fence_usage usage, std::uint32_t deadline_ms) {
  auto r = call<wire::fence_reply>(
      wire::add_client_fence_request{.buffer = id, .usage = usage, .deadline_ms = deadline_ms});
  if (!r) return std::move(r).err();
  return r->fence;
}

status remote_client::signal_client_fence(std::uint64_t fence, int error) {
  return to_status(call<wire::empty_body>(wire::signal_client_fence_request{.fence = fence, .error = error}));
}

result<int> remote_client::wait(std::uint64_t fence, std::uint32_t timeout_ms) {
  auto r = call<wire::wait_reply>(wire::wait_request{.fence = fence, .timeout_ms = timeout_ms});
  if (!r) return std::move(r).err();
  return r->fence_error;
}

result<wire::validate_reply> remote_client::validate(std::vector<buffer_id> ids) {
  return call<wire::validate_reply>(wire::validate_request{.buffers = std::move(ids)});
}

result<std::uint64_t> remote_client::cpu_begin(buffer_id id, bool write, std::uint32_t timeout_ms) {
  auto r = call<wire::cpu_begin_reply>(wire::cpu_begin_request{.buffer = id, .write = write, .timeout_ms = timeout_ms});
  if (!r) return std::move(r).err();
  return r->size;
}

status remote_client::cpu_end(buffer_id id) { return to_status(call<wire::empty_body>(wire::cpu_end_request{.id = id})); }

result<wire::stats_reply> remote_client::stats() { return call<wire::stats_reply>(wire::stats_request{}); }

result<wire::trace_reply> remote_client::trace(std::uint64_t since, std::uint32_t max) {
  return call<wire::trace_reply>(wire::trace_request{.since = since, .max = max});
}

}  // namespace xbuf::client
