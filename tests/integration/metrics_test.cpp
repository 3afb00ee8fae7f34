// SPDX-License-Identifier: MIT
//
// `xbufd --metrics` against the real daemon binary (issue 12, item 2): the
// port it prints serves Prometheus text that follows a real client's
// allocation; other paths get 404 and other methods 405; keep-alive works;
// a silent client, an oversized header and connections past the cap cost
// only their own connection; promtool finds nothing to complain about; a
// bad address is a usage error and a taken port a start-up error.
//
// The HTTP client here is a plain socket: what goes over the wire is
// exactly what the test wrote. Waits are bounded by deadlines; nothing
// asserts how long anything took.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client/allocator.hpp"
#include "tests/common/shell.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t KiB = 1024;
constexpr std::size_t max_scrape_connections = 8;  // metrics_limits::max_connections

// A connected TCP socket to the loopback `host` (AF_INET or AF_INET6), or -1.
int tcp_connect(std::uint16_t port, bool ipv6 = false) {
  const int fd = ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int rc = -1;
  if (ipv6) {
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_port = htons(port);
    a.sin6_addr = in6addr_loopback;
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  } else {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rc = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  if (rc != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool send_all(int fd, const std::string& bytes) {
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return false;
    sent += static_cast<std::size_t>(n);
  }
  return true;
}

// Everything the peer sends until it closes (or resets), within 20 s.
// nothing: it was still open at the deadline.
std::optional<std::string> read_to_close(int fd) {
  std::string out;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 100) != 1) continue;
    char buf[8192];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return out;  // 0: FIN; < 0: a reset, also a close
    out.append(buf, static_cast<std::size_t>(n));
  }
  return std::nullopt;
}

// Whether the peer has closed `fd` or sent anything, without waiting.
bool peer_said_anything(int fd) {
  pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
  return ::poll(&p, 1, 0) != 0;
}

struct http_reply {
  int status = 0;
  std::string head;  // status line and headers
  std::string body;
};

// Splits what one response (the first, if several came) looks like.
std::optional<http_reply> parse_reply(const std::string& raw) {
  const auto end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return std::nullopt;
  http_reply r;
  r.status = std::atoi(raw.c_str() + 9);
  r.head = raw.substr(0, end + 2);
  r.body = raw.substr(end + 4);
  return r;
}

// Sends `request` on a new connection and reads the reply until the daemon
// closes it (the requests here say Connection: close). nothing: no
// connection, or no complete reply.
std::optional<http_reply> http_exchange(std::uint16_t port, const std::string& request, bool ipv6 = false) {
  const int fd = tcp_connect(port, ipv6);
  if (fd < 0) return std::nullopt;
  std::optional<std::string> raw;
  if (send_all(fd, request)) raw = read_to_close(fd);
  ::close(fd);
  if (!raw) return std::nullopt;
  return parse_reply(*raw);
}

std::string get_request(const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
}

// The value of the sample line that starts with `series` and a space; -1
// if there is none.
long long sample(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(series + " ", 0) == 0) return std::stoll(line.substr(series.size() + 1));
  }
  return -1;
}

const std::string pageable_used = R"(xbuf_domain_used_bytes{domain="pageable",kind="pageable",device=""})";

// The port in xbufd's "metrics on http://HOST:PORT/metrics" line, once it came.
std::optional<std::uint16_t> metrics_port(test::daemon_process& d, const std::string& host) {
  const std::string prefix = "xbufd: metrics on http://" + host + ":";
  if (!d.wait_log(prefix)) return std::nullopt;
  std::istringstream in(d.log());
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(prefix, 0) == 0) return static_cast<std::uint16_t>(std::stoul(line.substr(prefix.size())));
  }
  return std::nullopt;
}

// Everything a command prints (stdout and stderr), and its exit status.
std::pair<std::string, int> run_command(const std::string& cmd) {
  auto r = test::run_shell(cmd + " 2>&1");
  return {r.out, r.rc};
}

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<test::scratch_daemon>(std::vector<std::string>{"--metrics", "127.0.0.1:0"});
    ASSERT_TRUE(daemon_->up()) << "xbufd did not come up; log:\n" << daemon_->log();
    auto port = metrics_port(daemon_->process(), "127.0.0.1");
    ASSERT_TRUE(port) << "no 'metrics on' line; log:\n" << daemon_->log();
    ASSERT_NE(*port, 0);
    port_ = *port;
  }
  void TearDown() override {
    if (HasFailure() && daemon_) std::fprintf(stderr, "xbufd log:\n%s\n", daemon_->log().c_str());
  }

  std::string scrape() {
    auto r = http_exchange(port_, get_request("/metrics"));
    EXPECT_TRUE(r) << "no reply to GET /metrics";
    if (!r) return {};
    EXPECT_EQ(r->status, 200) << r->head;
    return r->body;
  }

  std::unique_ptr<test::scratch_daemon> daemon_;
  std::uint16_t port_ = 0;
};

TEST_F(MetricsTest, AScrapeShowsTheBufferAClientAllocated) {
  auto r = http_exchange(port_, get_request("/metrics"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_NE(r->head.find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), std::string::npos) << r->head;
  const long long used_before = sample(r->body, pageable_used);
  ASSERT_GE(used_before, 0) << r->body;
  EXPECT_EQ(sample(r->body, "xbuf_clients"), 0) << r->body;

  auto job = client::connect_daemon(daemon_->socket(), "metrics-job");
  ASSERT_TRUE(job) << job.err().describe();
  auto b = (*job)->alloc({.size = 256 * KiB, .placements = {placement::pageable()}, .name = "scraped",
                          .cpu_access = false, .no_evict = false, .alignment = 0});
  ASSERT_TRUE(b) << b.err().describe();

  const std::string after = scrape();
  EXPECT_GE(sample(after, pageable_used), used_before + static_cast<long long>(256 * KiB)) << after;
  EXPECT_GE(sample(after, R"(xbuf_domain_peak_used_bytes{domain="pageable",kind="pageable",device=""})"),
            sample(after, pageable_used))
      << after;
  EXPECT_EQ(sample(after, "xbuf_clients"), 1) << after;
  EXPECT_EQ(sample(after, "xbuf_buffers"), 1) << after;
  EXPECT_GE(sample(after, "xbuf_allocations_total"), 1) << after;
  // No series per client: the endpoint is open to every local user.
  EXPECT_EQ(after.find("metrics-job"), std::string::npos) << after;
  EXPECT_EQ(after.find("scraped"), std::string::npos) << after;
}

TEST_F(MetricsTest, OtherPathsGet404AndOtherMethods405) {
  auto missing = http_exchange(port_, get_request("/metric"));
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404) << missing->head;
  EXPECT_FALSE(missing->body.empty());

  auto posted =
      http_exchange(port_, "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
  ASSERT_TRUE(posted);
  EXPECT_EQ(posted->status, 405) << posted->head;
  EXPECT_NE(posted->head.find("Allow: GET\r\n"), std::string::npos) << posted->head;

  // HEAD is another method; its answer has no body (RFC 9110 9.3.2).
  auto head = http_exchange(port_, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 405) << head->head;
  EXPECT_EQ(head->body, "");

  // A query string is not part of the path.
  auto query = http_exchange(port_, get_request("/metrics?name[]=xbuf_clients"));
  ASSERT_TRUE(query);
  EXPECT_EQ(query->status, 200) << query->head;
}

TEST_F(MetricsTest, OneConnectionServesRequestsInTurn) {
  const int fd = tcp_connect(port_);
  ASSERT_GE(fd, 0);
  const std::string keep = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_TRUE(send_all(fd, keep + keep + get_request("/nope")));
  auto raw = read_to_close(fd);
  ::close(fd);
  ASSERT_TRUE(raw) << "the connection stayed open after Connection: close";
  std::size_t ok = 0;
  const std::string status_ok = "HTTP/1.1 200 OK\r\n";
  for (auto at = raw->find(status_ok); at != std::string::npos; at = raw->find(status_ok, at + 1)) ++ok;
  EXPECT_EQ(ok, 2u) << *raw;
  EXPECT_NE(raw->find("HTTP/1.1 404 Not Found\r\n"), std::string::npos) << *raw;
}

TEST_F(MetricsTest, ASilentClientDoesNotBlockAScrapeAndIsClosedAfterTheReadTimeout) {
  const int silent = tcp_connect(port_);
  ASSERT_GE(silent, 0);
  EXPECT_GT(sample(scrape(), pageable_used), -1);
  // The scrape did not wait for the silent one to time out: it is still open.
  EXPECT_FALSE(peer_said_anything(silent)) << "the silent connection was answered or closed before the scrape";
  // And it does not stay forever.
  auto rest = read_to_close(silent);
  ::close(silent);
  ASSERT_TRUE(rest) << "the daemon kept a silent connection open";
  EXPECT_TRUE(rest->empty()) << *rest;
}

TEST_F(MetricsTest, AnOversizedHeaderClosesThatConnectionOnly) {
  const int fd = tcp_connect(port_);
  ASSERT_GE(fd, 0);
  // A header that would grow forever: the daemon stops reading at its
  // limit, answers 400 (or the reset beats it) and closes.
  std::string request = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(64 * KiB, 'a') + "\r\n\r\n";
  send_all(fd, request);  // may fail half-way once the daemon closed
  auto raw = read_to_close(fd);
  ::close(fd);
  ASSERT_TRUE(raw) << "the daemon kept reading an endless header";
  if (!raw->empty()) {
    EXPECT_EQ(raw->rfind("HTTP/1.1 400 ", 0), 0u) << *raw;
  }
  EXPECT_GT(sample(scrape(), pageable_used), -1);
}

TEST_F(MetricsTest, ConnectionsPastTheCapAreClosedAndTheOthersServed) {
  std::vector<int> idle;
  for (std::size_t i = 0; i < max_scrape_connections; ++i) {
    idle.push_back(tcp_connect(port_));
    ASSERT_GE(idle.back(), 0);
  }
  // Until the daemon has accepted all eight, a ninth may still be taken; so
  // wait until one past the cap is closed unanswered.
  bool refused = false;
  for (int attempt = 0; attempt < 50 && !refused; ++attempt) {
    const int extra = tcp_connect(port_);
    ASSERT_GE(extra, 0);
    send_all(extra, get_request("/metrics"));
    pollfd p{.fd = extra, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 1000) == 1) {
      char c = 0;
      refused = ::recv(extra, &c, 1, 0) <= 0;
    }
    ::close(extra);
  }
  EXPECT_TRUE(refused) << "a connection past the cap of " << max_scrape_connections << " was served";
  for (int fd : idle) {
    EXPECT_FALSE(peer_said_anything(fd));
    ::close(fd);
  }
  // Their slots come back once the daemon saw them go.
  std::optional<http_reply> r;
  for (int attempt = 0; attempt < 100 && !(r && r->status == 200); ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(20ms);
    r = http_exchange(port_, get_request("/metrics"));
  }
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST_F(MetricsTest, PromtoolFindsNothingToComplainAbout) {
  if (run_command("command -v promtool").second != 0) {
    GTEST_SKIP() << "promtool is not installed (Debian's prometheus package; scripts/install-deps.sh)";
  }
  auto job = client::connect_daemon(daemon_->socket(), "promtool-job");
  ASSERT_TRUE(job) << job.err().describe();
  ASSERT_TRUE((*job)->alloc({.size = 64 * KiB, .placements = {placement::vram(0)}, .name = "",
                             .cpu_access = false, .no_evict = false, .alignment = 0}));
  const std::string text = scrape();
  ASSERT_FALSE(text.empty());
  char path[] = "/tmp/xbuf-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::ofstream(path) << text;
  const auto [out, status] = run_command(std::string("promtool check metrics < ") + path);
  ::unlink(path);
  EXPECT_EQ(status, 0) << "promtool status " << status << ":\n" << out;
  EXPECT_EQ(out, "") << text;
}

TEST(MetricsFlagTest, ABadAddressIsAUsageErrorNamingTheFlagAndTheValue) {
  const std::string xbufd = std::string(XBUF_BIN_DIR) + "/xbufd";
  for (const char* bad : {"0.0.0.0:9100", "127.0.0.1", "localhost:http", "[::1]:70000", "::1:9100"}) {
    const auto [out, status] = run_command(xbufd + " --backend sim --metrics '" + bad + "'");
    EXPECT_EQ(status, 2) << bad << ": status " << status << "\n" << out;
    EXPECT_NE(out.find("--metrics"), std::string::npos) << out;
    EXPECT_NE(out.find(std::string("'") + bad + "'"), std::string::npos) << out;
  }
  const auto [out, status] = run_command(xbufd + " --backend sim --metrics");
  EXPECT_EQ(status, 2) << out;
}

TEST(MetricsFlagTest, APortInUseIsAStartUpErrorNamingTheAddress) {
  test::scratch_daemon first({"--metrics", "127.0.0.1:0"});
  ASSERT_TRUE(first.up()) << first.log();
  auto port = metrics_port(first.process(), "127.0.0.1");
  ASSERT_TRUE(port) << first.log();
  const std::string taken = "127.0.0.1:" + std::to_string(*port);

  test::scratch_daemon second({"--metrics", taken});
  EXPECT_FALSE(second.up());
  const auto status = second.process().wait_exit(20s);
  ASSERT_TRUE(status) << "the second xbufd did not exit; log:\n" << second.log();
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 1) << "status " << *status << "\n" << second.log();
  EXPECT_NE(second.log().find("metrics " + taken + ": bind: "), std::string::npos) << second.log();
  // The first one still serves.
  auto r = http_exchange(*port, get_request("/metrics"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
}

TEST(MetricsFlagTest, ServesOnTheIpv6Loopback) {
  const int probe = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  const bool have_v6 = probe >= 0 && ::bind(probe, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  if (probe >= 0) ::close(probe);
  if (!have_v6) GTEST_SKIP() << "no IPv6 loopback here (::1 cannot be bound)";

  test::scratch_daemon d({"--metrics", "[::1]:0"});
  ASSERT_TRUE(d.up()) << d.log();
  auto port = metrics_port(d.process(), "[::1]");
  ASSERT_TRUE(port) << d.log();
  auto r = http_exchange(*port, get_request("/metrics"), true);
  ASSERT_TRUE(r) << d.log();
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(sample(r->body, pageable_used), 0) << r->body;
}

}  // namespace
}  // namespace xbuf
