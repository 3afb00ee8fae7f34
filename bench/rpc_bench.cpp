// SPDX-License-Identifier: MIT
//
// rpc_bench - what a request costs through xbufd, against the cheapest
// request/reply a Unix socket can carry (issue 11, "Speed to the limits").
//
// Subject: xbufd from this binary's directory (sim backend, a private
// socket in a temp dir), spoken to in raw frames: wire::encode_message for
// the request, wire::decode_reply for the reply, one blocking write and as
// many reads as the reply takes. Raw frames rather than client/: the figure
// is the daemon's, and the limit then runs exactly the same client code.
//
// Limit: an echo server (one thread, epoll, nonblocking sockets - what
// xbufd's io thread does at the least) that answers each request with the
// reply xbufd gave to the same request type, recorded at the start, its
// request id patched. So request and reply frames are byte for byte the
// sizes of xbufd's, and the client decodes the same bodies.
//
// Figures (one JSON line each, bench/common/report.hpp):
//   rpc_alloc_free_p50/_p99  alloc (64 KiB, vram0) then free of it, one
//                            round trip each; p50/p99 of the pair
//   rpc_hello_p50            hello (routed on the session: no pool hop)
//   rpc_stats_p50            stats (a manager call)
//     each with the client, the daemon's every thread and the echo server
//     pinned to one CPU (sched_setaffinity), target <= 1.5 (hello <= 1.3);
//   rpc_throughput_1/_8      alloc+free requests per second from 1 and 8
//                            client processes (unpinned), xbufd / echo,
//                            target >= 0.8.
// Subject and limit alternate per repetition (throughput: in 50 ms slices,
// ten of each per repetition, from the same client processes connected to
// both); each repetition's ratio is subject / limit, the figure their
// median.
//
//   rpc_bench [--short]
#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "bench/common/report.hpp"
#include "server/protocol.hpp"

namespace {

using namespace xbuf;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using bytes = std::vector<std::uint8_t>;

// The servers this run started, and its temp dir: gone however it ends.
std::vector<pid_t> servers;
std::string temp_dir;

void stop_servers() {
  for (pid_t p : servers) {
    ::kill(p, SIGTERM);
    ::waitpid(p, nullptr, 0);
  }
  servers.clear();
  if (!temp_dir.empty()) std::filesystem::remove_all(temp_dir);
  temp_dir.clear();
}

[[noreturn]] void die(const std::string& why) {
  std::fprintf(stderr, "rpc_bench: %s\n", why.c_str());
  stop_servers();
  std::exit(1);
}

// In a child: end with the parent, whatever stops it; the servers and the
// temp dir stay the parent's to remove.
void die_with_parent() {
  (void)::prctl(PR_SET_PDEATHSIG, SIGTERM);
  servers.clear();
  temp_dir.clear();
}

// ------------------------------------------------------------ CPU affinity

cpu_set_t all_cpus() {
  cpu_set_t s;
  CPU_ZERO(&s);
  if (::sched_getaffinity(0, sizeof s, &s) != 0) die("sched_getaffinity: " + std::string(std::strerror(errno)));
  return s;
}

cpu_set_t one_cpu(const cpu_set_t& allowed) {
  int last = 0;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &allowed)) last = c;
  }
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(last, &s);
  return s;
}

// Every thread of process `pid` (sched_setaffinity takes one thread's id).
void set_affinity(pid_t pid, const cpu_set_t& s) {
  const auto dir = std::filesystem::path("/proc") / std::to_string(pid) / "task";
  for (const auto& t : std::filesystem::directory_iterator(dir)) {
    const pid_t tid = static_cast<pid_t>(std::stol(t.path().filename().string()));
    (void)::sched_setaffinity(tid, sizeof s, &s);
  }
}

// ------------------------------------------------------------ the client side

struct connection {
  int fd = -1;
  bytes in;
  std::size_t pos = 0;
  std::uint64_t next_id = 1;

  connection() = default;
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;
  ~connection() {
    if (fd >= 0) ::close(fd);
  }

  bool open(const std::string& path) {
    fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::snprintf(a.sun_path, sizeof a.sun_path, "%s", path.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return true;
    ::close(fd);
    fd = -1;
    return false;
  }

  // One request out, its reply back (the whole frame).
  wire::frame round_trip(const bytes& request) {
    for (std::size_t off = 0; off < request.size();) {
      const ssize_t k = ::send(fd, request.data() + off, request.size() - off, MSG_NOSIGNAL);
      if (k <= 0) die("send: " + std::string(std::strerror(errno)));
      off += static_cast<std::size_t>(k);
    }
    for (;;) {
      if (in.size() - pos >= wire::header_size) {
        std::uint32_t len = 0;
        std::memcpy(&len, in.data() + pos + 16, 4);  // little-endian hosts only, as xbuf
        if (in.size() - pos >= wire::header_size + len) {
          wire::frame f;
          std::memcpy(&f.header.type, in.data() + pos + 6, 2);
          std::memcpy(&f.header.request_id, in.data() + pos + 8, 8);
          f.header.payload_len = len;
          f.payload.assign(in.begin() + static_cast<std::ptrdiff_t>(pos + wire::header_size),
                           in.begin() + static_cast<std::ptrdiff_t>(pos + wire::header_size + len));
          pos += wire::header_size + len;
          if (pos == in.size()) {
            in.clear();
            pos = 0;
          }
          return f;
        }
      }
      std::uint8_t buf[64 * 1024];
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) die(n == 0 ? "the server hung up" : "recv: " + std::string(std::strerror(errno)));
      in.insert(in.end(), buf, buf + n);
    }
  }

  template <class M>
  bytes request(const M& m) {
    return wire::encode_message(next_id++, m);
  }
};

template <class R>
R expect(wire::msg_type type, const wire::frame& f) {
  auto r = wire::decode_reply<R>(type, f);
  if (!r) die(wire::type_name(static_cast<std::uint16_t>(type)) + ": " + r.err().describe());
  return *r;
}

wire::alloc_request alloc_message() {
  wire::alloc_request m;
  m.size = 64 << 10;
  m.placements = {placement::vram(0)};
  return m;
}

// The operations measured. Each is what a client does for one figure.
void hello_op(connection& c) {
  (void)expect<wire::hello_reply>(wire::msg_type::hello,
                                  c.round_trip(c.request(wire::hello_request{.client_name = "rpc_bench"})));
}
void alloc_free_op(connection& c) {
  static const wire::alloc_request a = alloc_message();
  const auto b = expect<wire::buffer_reply>(wire::msg_type::alloc, c.round_trip(c.request(a)));
  (void)expect<wire::empty_body>(wire::msg_type::free, c.round_trip(c.request(wire::free_request{.id = b.buffer})));
}
void stats_op(connection& c) {
  (void)expect<wire::stats_reply>(wire::msg_type::stats, c.round_trip(c.request(wire::stats_request{})));
}

// --------------------------------------------------------------- servers

struct child {
  pid_t pid = -1;
};

// xbufd from this binary's directory on a private socket.
bool start_xbufd(child& c, const std::string& dir, const std::string& socket) {
  const auto bin = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "xbufd";
  c.pid = ::fork();
  if (c.pid > 0) servers.push_back(c.pid);
  if (c.pid == 0) {
    die_with_parent();
    const std::string log = dir + "/xbufd.log";
    (void)std::freopen(log.c_str(), "w", stderr);
    (void)std::freopen(log.c_str(), "a", stdout);
    ::execl(bin.c_str(), "xbufd", "--backend", "sim", "--sim-devices", "1", "--sim-vram", "256M", "--pinned",
            "256M", "--socket", socket.c_str(), "--quiet", static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  return c.pid > 0;
}

// The limit: answers each request frame with `replies[type]` (xbufd's own
// reply to that type, recorded), the request's id patched in.
[[noreturn]] void echo_server(int listen_fd, const std::map<std::uint16_t, bytes>& replies) {
  const int ep = ::epoll_create1(EPOLL_CLOEXEC);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listen_fd;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev);
  std::map<int, bytes> pending;  // bytes of a frame not complete yet, per connection
  std::uint8_t buf[64 * 1024];
  bytes out;
  for (;;) {
    epoll_event evs[64];
    const int n = ::epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      if (fd == listen_fd) {
        const int c = ::accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (c < 0) continue;
        epoll_event cev{};
        cev.events = EPOLLIN;
        cev.data.fd = c;
        ::epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        pending[c];
        continue;
      }
      const ssize_t k = ::recv(fd, buf, sizeof buf, 0);
      if (k <= 0) {
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
        pending.erase(fd);
        continue;
      }
      bytes& in = pending[fd];
      in.insert(in.end(), buf, buf + k);
      out.clear();
      std::size_t pos = 0;
      while (in.size() - pos >= wire::header_size) {
        std::uint32_t len = 0;
        std::memcpy(&len, in.data() + pos + 16, 4);
        if (in.size() - pos < wire::header_size + len) break;
        std::uint16_t type = 0;
        std::memcpy(&type, in.data() + pos + 6, 2);
        auto it = replies.find(type);
        if (it == replies.end()) std::_Exit(3);
        const std::size_t at = out.size();
        out.insert(out.end(), it->second.begin(), it->second.end());
        std::memcpy(out.data() + at + 8, in.data() + pos + 8, 8);  // the request id
        pos += wire::header_size + len;
      }
      in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(pos));
      for (std::size_t off = 0; off < out.size();) {
        const ssize_t w = ::send(fd, out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EAGAIN) {
          std::this_thread::yield();
          continue;
        }
        if (w <= 0) break;
        off += static_cast<std::size_t>(w);
      }
    }
  }
}

bool start_echo(child& c, const std::string& socket, const std::map<std::uint16_t, bytes>& replies) {
  const int l = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::snprintf(a.sun_path, sizeof a.sun_path, "%s", socket.c_str());
  if (::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(l, 64) != 0) return false;
  c.pid = ::fork();
  if (c.pid > 0) servers.push_back(c.pid);
  if (c.pid == 0) {
    die_with_parent();
    echo_server(l, replies);
  }
  ::close(l);
  return c.pid > 0;
}

// The bytes of xbufd's reply to `request` on `c`, request id and all.
bytes recorded(connection& c, const bytes& request) {
  const wire::frame f = c.round_trip(request);
  bytes b = wire::encode_frame(f.header.type, f.header.request_id, f.payload);
  return b;
}

// --------------------------------------------------------------- measuring

// Nanoseconds of each of `n` runs of op(c), after a warm-up.
template <class Op>
std::vector<double> latencies(connection& c, Op op, int n) {
  for (int i = 0; i < n / 10 + 10; ++i) op(c);
  std::vector<double> ns;
  ns.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto t0 = clock_type::now();
    op(c);
    ns.push_back(std::chrono::duration<double, std::nano>(clock_type::now() - t0).count());
  }
  std::sort(ns.begin(), ns.end());
  return ns;
}

double percentile(const std::vector<double>& sorted, double p) {
  const auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(i, sorted.size() - 1)];
}

// `clients` processes, each connected to both servers, driving alloc+free
// on one of them for a slice at a time as they are told. Short slices,
// alternating between the two servers, so a neighbour's load on the
// shared machine falls on both alike.
class client_procs {
 public:
  client_procs(const std::string& subject, const std::string& limit, int clients) {
    if (::pipe(done_) != 0) die("pipe");
    for (int i = 0; i < clients; ++i) {
      int cmd[2];
      if (::pipe(cmd) != 0) die("pipe");
      const pid_t p = ::fork();
      if (p == 0) {
        die_with_parent();
        ::close(cmd[1]);
        ::close(done_[0]);
        run(cmd[0], subject, limit);
      }
      ::close(cmd[0]);
      cmds_.push_back(cmd[1]);
      pids_.push_back(p);
    }
    ::close(done_[1]);
  }
  ~client_procs() {
    for (int fd : cmds_) ::close(fd);  // EOF: each child exits
    ::close(done_[0]);
    for (pid_t p : pids_) ::waitpid(p, nullptr, 0);
  }
  client_procs(const client_procs&) = delete;
  client_procs& operator=(const client_procs&) = delete;

  // Requests every client completed in `ms` milliseconds on the subject
  // (or the limit), summed, per second.
  double rate(bool subject, std::uint32_t ms) {
    const std::uint32_t cmd = (subject ? 1u << 31 : 0u) | ms;
    for (int fd : cmds_) {
      if (::write(fd, &cmd, sizeof cmd) != sizeof cmd) die("a throughput client is gone");
    }
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < cmds_.size(); ++i) {
      std::uint64_t n = 0;
      if (::read(done_[0], &n, sizeof n) != sizeof n) die("a throughput client failed");
      total += n;
    }
    return static_cast<double>(total) / (ms / 1000.0);
  }

 private:
  [[noreturn]] void run(int cmd, const std::string& subject, const std::string& limit) {
    connection on[2];
    if (!on[0].open(limit) || !on[1].open(subject)) std::_Exit(2);
    hello_op(on[0]);
    hello_op(on[1]);
    for (std::uint32_t c = 0; ::read(cmd, &c, sizeof c) == sizeof c;) {
      connection& to = on[c >> 31];
      const auto end = clock_type::now() + std::chrono::milliseconds(c & ~(1u << 31));
      std::uint64_t requests = 0;
      while (clock_type::now() < end) {
        alloc_free_op(to);
        requests += 2;
      }
      if (::write(done_[1], &requests, sizeof requests) != sizeof requests) std::_Exit(2);
    }
    std::_Exit(0);
  }

  int done_[2] = {-1, -1};
  std::vector<int> cmds_;
  std::vector<pid_t> pids_;
};

}  // namespace

int main(int argc, char** argv) {
  const bool quick = bench::short_mode(argc, argv);
  const int reps = quick ? 3 : 9;
  const int ops = quick ? 200 : 3000;
  const int tp_reps = quick ? 1 : 7;
  const int tp_slices = quick ? 2 : 10;          // per repetition, alternating subject and limit
  const std::uint32_t tp_slice_ms = quick ? 40 : 50;

  char d[] = "/tmp/xbuf-rpc-bench-XXXXXX";
  if (::mkdtemp(d) == nullptr) die("mkdtemp");
  const std::string dir = d;
  temp_dir = dir;
  const std::string xsock = dir + "/xbuf.sock", esock = dir + "/echo.sock";

  child daemon, echo;
  if (!start_xbufd(daemon, dir, xsock)) die("cannot start xbufd");
  connection x;
  for (int i = 0; i < 200 && !x.open(xsock); ++i) std::this_thread::sleep_for(25ms);
  if (x.fd < 0) die("xbufd did not listen on " + xsock + " (see its log in " + dir + ")");

  // xbufd's replies, recorded once for the echo server.
  std::map<std::uint16_t, bytes> replies;
  replies[static_cast<std::uint16_t>(wire::msg_type::hello)] =
      recorded(x, x.request(wire::hello_request{.client_name = "rpc_bench"}));
  {
    const bytes a = recorded(x, x.request(alloc_message()));
    wire::frame f;
    f.header.type = static_cast<std::uint16_t>(wire::msg_type::alloc) | wire::reply_bit;
    f.payload.assign(a.begin() + wire::header_size, a.end());
    const auto id = expect<wire::buffer_reply>(wire::msg_type::alloc, f).buffer;
    replies[static_cast<std::uint16_t>(wire::msg_type::alloc)] = a;
    replies[static_cast<std::uint16_t>(wire::msg_type::free)] =
        recorded(x, x.request(wire::free_request{.id = id}));
  }
  replies[static_cast<std::uint16_t>(wire::msg_type::stats)] = recorded(x, x.request(wire::stats_request{}));
  if (!start_echo(echo, esock, replies)) die("cannot start the echo server on " + esock);
  connection e;
  if (!e.open(esock)) die("cannot connect to the echo server");
  std::fprintf(stderr, "rpc_bench: reply frames: hello %zu, alloc %zu, free %zu, stats %zu bytes\n",
               replies[static_cast<std::uint16_t>(wire::msg_type::hello)].size(),
               replies[static_cast<std::uint16_t>(wire::msg_type::alloc)].size(),
               replies[static_cast<std::uint16_t>(wire::msg_type::free)].size(),
               replies[static_cast<std::uint16_t>(wire::msg_type::stats)].size());

  // Latency: everyone on one CPU.
  const cpu_set_t all = all_cpus();
  const cpu_set_t one = one_cpu(all);
  (void)::sched_setaffinity(0, sizeof one, &one);
  set_affinity(daemon.pid, one);
  set_affinity(echo.pid, one);

  const std::string ping = "raw Unix-socket ping-pong, same frames, one CPU";
  bench::figure af50{"rpc_alloc_free_p50", "ns", ping, bench::at_most(1.5), {}, {}};
  bench::figure af99{"rpc_alloc_free_p99", "ns", ping, bench::at_most(1.5), {}, {}};
  bench::figure hello50{"rpc_hello_p50", "ns", ping, bench::at_most(1.3), {}, {}};
  bench::figure stats50{"rpc_stats_p50", "ns", ping, bench::at_most(1.5), {}, {}};
  for (int r = 0; r < reps; ++r) {
    const auto xa = latencies(x, alloc_free_op, ops);
    const auto ea = latencies(e, alloc_free_op, ops);
    af50.add(percentile(xa, 50), percentile(ea, 50));
    af99.add(percentile(xa, 99), percentile(ea, 99));
    const auto xh = latencies(x, hello_op, ops);
    const auto eh = latencies(e, hello_op, ops);
    hello50.add(percentile(xh, 50), percentile(eh, 50));
    const auto xs = latencies(x, stats_op, ops);
    const auto es = latencies(e, stats_op, ops);
    stats50.add(percentile(xs, 50), percentile(es, 50));
  }
  const std::string extra = quick ? "\"short\":true" : "";
  for (const auto* f : {&af50, &af99, &hello50, &stats50}) bench::report(*f, extra);

  // Throughput: nobody pinned.
  (void)::sched_setaffinity(0, sizeof all, &all);
  set_affinity(daemon.pid, all);
  set_affinity(echo.pid, all);
  for (int clients : {1, 8}) {
    bench::figure tp{"rpc_throughput_" + std::to_string(clients), "requests/s",
                     "raw echo server (epoll, one thread), same client processes", bench::at_least(0.8), {}, {}};
    client_procs procs(xsock, esock, clients);
    (void)procs.rate(true, 20);  // warm both up
    (void)procs.rate(false, 20);
    for (int r = 0; r < tp_reps; ++r) {
      double xr = 0, er = 0;
      for (int k = 0; k < tp_slices; ++k) {
        xr += procs.rate(true, tp_slice_ms) / tp_slices;
        er += procs.rate(false, tp_slice_ms) / tp_slices;
      }
      tp.add(xr, er);
    }
    bench::report(tp, extra.empty() ? "\"clients\":" + std::to_string(clients)
                                    : extra + ",\"clients\":" + std::to_string(clients));
  }
  stop_servers();
  return 0;
}
