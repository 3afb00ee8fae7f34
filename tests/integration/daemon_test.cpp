// SPDX-License-Identifier: MIT
//
// The real xbufd binary on a temporary socket with the sim backend, driven
// by real client connections and child processes. Waits are bounded (a
// deadline fails the test) but nothing asserts on how long anything took.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "client/remote_client.hpp"
#include "client/xbuf_c.h"
#include "server/protocol.hpp"

namespace xbuf {
namespace {

using client::remote_client;
using namespace std::chrono_literals;

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;

// A mapping of an exported buffer's memory.
struct mapped {
  void* base = MAP_FAILED;
  std::size_t length = 0;
  std::uint8_t* data = nullptr;
  ~mapped() {
    if (base != MAP_FAILED) ::munmap(base, length);
  }
};
void map_export(const client::exported_buffer& e, mapped* m) {
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = e.offset & ~(page - 1);
  m->length = static_cast<std::size_t>(e.offset - start + e.size);
  m->base = ::mmap(nullptr, m->length, PROT_READ | PROT_WRITE, MAP_SHARED, e.fd, static_cast<off_t>(start));
  ASSERT_NE(m->base, MAP_FAILED) << std::strerror(errno);
  m->data = static_cast<std::uint8_t*>(m->base) + (e.offset - start);
}

class DaemonTest : public ::testing::Test {
 protected:
  // The daemon's options after --socket and --backend sim.
  virtual std::vector<std::string> daemon_args() const {
    return {"--sim-devices", "2", "--sim-vram", "1M", "--pinned", "4M", "--pageable", "16M"};
  }

  void SetUp() override {
    char dir[] = "/tmp/xbufd-test-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    socket_ = dir_ + "/xbuf.sock";
    log_ = dir_ + "/xbufd.log";
    const std::string bin = std::string(XBUF_BIN_DIR) + "/xbufd";
    pid_ = ::fork();
    ASSERT_GE(pid_, 0);
    if (pid_ == 0) {
      const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        ::dup2(fd, 1);
        ::dup2(fd, 2);
      }
      std::vector<std::string> args{"xbufd", "--socket", socket_, "--backend", "sim"};
      for (auto& a : daemon_args()) args.push_back(a);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(bin.c_str(), argv.data());
      std::perror("exec xbufd");
      ::_exit(127);
    }
    // Bounded: the daemon must answer within 20 s.
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      auto c = remote_client::connect(socket_, "probe");
      if (c) return;
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        FAIL() << "xbufd exited early; log:\n" << daemon_log();
      }
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "xbufd did not come up on " << socket_ << "; log:\n" << daemon_log();
  }

  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      int st = 0;
      const auto deadline = std::chrono::steady_clock::now() + 20s;
      pid_t r = 0;
      while ((r = ::waitpid(pid_, &st, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
      }
      if (r == 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &st, 0);
        ADD_FAILURE() << "xbufd ignored SIGTERM; log:\n" << daemon_log();
      } else {
        EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "xbufd status " << st << "; log:\n" << daemon_log();
      }
    }
    ::unlink(log_.c_str());
    ::unlink(socket_.c_str());
    ::rmdir(dir_.c_str());
  }

  std::string daemon_log() const {
    std::string out;
    if (std::FILE* f = std::fopen(log_.c_str(), "r")) {
      char buf[4096];
      std::size_t n = 0;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
      std::fclose(f);
    }
    return out;
  }

  remote_client connect(const std::string& name) {
    auto c = remote_client::connect(socket_, name);
    EXPECT_TRUE(c) << c.err().describe();
    if (!c) throw std::runtime_error("connect failed");
    return std::move(*c);
  }

  // A raw connection (no hello), for malformed input.
  int raw_connect() {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_.c_str(), socket_.size() + 1);
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    return fd;
  }
  // Everything until EOF (bounded by a 20 s deadline).
  static std::vector<std::uint8_t> read_to_eof(int fd) {
    std::vector<std::uint8_t> all;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      std::uint8_t buf[4096];
      const ssize_t k = ::recv(fd, buf, sizeof buf, 0);
      if (k <= 0) return all;
      all.insert(all.end(), buf, buf + k);
    }
    ADD_FAILURE() << "xbufd did not close the connection";
    return all;
  }

  std::string dir_, socket_, log_;
  pid_t pid_ = -1;
};

TEST_F(DaemonTest, AllocAttachMapDetachFree) {
  auto a = connect("a");
  EXPECT_GT(a.owner(), 0u);
  auto b = a.alloc(64 * KiB, {placement::vram(0), placement::pinned()}, "weights");
  ASSERT_TRUE(b) << b.err().describe();
  auto att = a.attach(*b, 0, attach_mode::dynamic);
  ASSERT_TRUE(att) << att.err().describe();
  auto m = a.map(*att);
  ASSERT_TRUE(m) << m.err().describe();
  EXPECT_EQ(m->where, placement::vram(0));
  ASSERT_FALSE(m->ranges.empty());
  EXPECT_EQ(m->ranges[0].size, 64 * KiB);
  if (m->wait_fence != 0) {
    EXPECT_TRUE(a.wait(m->wait_fence, 10000));
  }
  EXPECT_TRUE(a.unmap(*att));
  EXPECT_TRUE(a.detach(*att));
  EXPECT_EQ(a.detach(*att).code(), errc::not_found);  // already detached
  EXPECT_TRUE(a.free(*b));
  EXPECT_EQ(a.free(*b).code(), errc::not_found) << "double free";
  // Wrong sizes come back as errors with a message, and the session lives on.
  auto zero = a.alloc(0, {placement::vram(0)});
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.code(), errc::invalid_argument);
  EXPECT_FALSE(zero.err().message.empty());
  auto nowhere = a.alloc(4 * KiB, {});
  EXPECT_EQ(nowhere.code(), errc::invalid_argument);
  EXPECT_TRUE(a.stats());
}

TEST_F(DaemonTest, MapWithoutAttachIsNotFound) {
  auto a = connect("a");
  EXPECT_EQ(a.map(12345).code(), errc::not_found);
}

TEST_F(DaemonTest, AnotherClientsIdIsNotFound) {
  auto a = connect("a");
  auto b = connect("b");
  auto buf = a.alloc(16 * KiB, {placement::pageable()}, "private");
  ASSERT_TRUE(buf) << buf.err().describe();
  EXPECT_EQ(b.free(*buf).code(), errc::not_found);
  EXPECT_EQ(b.attach(*buf, 0, attach_mode::pinned).code(), errc::not_found);
  EXPECT_EQ(b.export_fd(*buf).code(), errc::not_found);
  EXPECT_EQ(b.share(*buf, b.owner()).code(), errc::not_found);
  EXPECT_TRUE(a.free(*buf)) << "a's buffer survived b's attempts";
}

// Eviction hints over the wire: the owner's done sends its buffer out
// first; a client the buffer is shared with cannot advise it; an unknown id
// is not_found.
TEST_F(DaemonTest, AdviceOrdersTheOwnersEvictionsAndOnlyTheOwnerGivesIt) {
  auto a = connect("a");
  auto b = connect("b");
  std::vector<buffer_id> ids;
  for (int i = 0; i < 4; ++i) {  // 4 x 256 KiB fill the 1 MiB GPU
    auto id = a.alloc(256 * KiB, {placement::vram(0), placement::pageable()}, "b" + std::to_string(i));
    ASSERT_TRUE(id) << id.err().describe();
    ids.push_back(*id);
  }
  ASSERT_TRUE(a.advise(ids[3], eviction_hint::done));  // the newest: LRU would keep it
  auto more = a.alloc(256 * KiB, {placement::vram(0), placement::pageable()}, "b4");
  ASSERT_TRUE(more) << more.err().describe();
  auto st = a.stats();
  ASSERT_TRUE(st) << st.err().describe();
  std::map<std::string, std::string> where;
  for (const auto& s : st->buffers) where[s.name] = to_string(s.where);
  EXPECT_EQ(where["b3"], "pageable") << "done went first";
  EXPECT_EQ(where["b0"], "vram0") << "the LRU buffer stayed";

  ASSERT_TRUE(a.share(ids[0], b.owner()));
  auto foreign = b.advise(ids[0], eviction_hint::done);
  EXPECT_EQ(foreign.code(), errc::permission_denied) << foreign.err().describe();
  EXPECT_EQ(b.advise(ids[1], eviction_hint::keep).code(), errc::not_found);
  EXPECT_EQ(a.advise(999999, eviction_hint::none).code(), errc::not_found);
}

TEST_F(DaemonTest, ExportedMemoryIsSharedAcrossClients) {
  auto a = connect("a");
  auto b = connect("b");
  auto buf = a.alloc(64 * KiB, {placement::vram(1), placement::pageable()}, "shared");
  ASSERT_TRUE(buf) << buf.err().describe();
  auto ea = a.export_fd(*buf);
  ASSERT_TRUE(ea) << ea.err().describe();
  mapped ma;
  map_export(*ea, &ma);
  ::close(ea->fd);
  for (std::size_t i = 0; i < 64 * KiB; ++i) ma.data[i] = static_cast<std::uint8_t>(i * 7 + 3);

  ASSERT_TRUE(a.share(*buf, b.owner()));
  auto eb = b.export_fd(*buf);
  ASSERT_TRUE(eb) << eb.err().describe();
  EXPECT_EQ(eb->size, ea->size);
  mapped mb;
  map_export(*eb, &mb);
  ::close(eb->fd);
  bool same = true;
  for (std::size_t i = 0; i < 64 * KiB && same; ++i) same = mb.data[i] == static_cast<std::uint8_t>(i * 7 + 3);
  EXPECT_TRUE(same) << "b does not see what a wrote";
  mb.data[5] = 0xEE;
  EXPECT_EQ(ma.data[5], 0xEE) << "a does not see what b wrote";
}

TEST_F(DaemonTest, MalformedFrameClosesOnlyThatConnection) {
  auto a = connect("a");
  auto before = a.alloc(4 * KiB, {placement::pageable()});
  ASSERT_TRUE(before);

  // Oversized: the header is readable, so the reply names the request id.
  const int fd = raw_connect();
  auto frame = wire::encode_frame(static_cast<std::uint16_t>(wire::msg_type::alloc), 5, {});
  const std::uint32_t huge = 1u << 20;
  std::memcpy(frame.data() + 16, &huge, 4);
  ASSERT_EQ(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL), static_cast<ssize_t>(frame.size()));
  auto got = read_to_eof(fd);
  ::close(fd);
  wire::frame_parser p(false);
  p.feed(got);
  auto r = p.next();
  ASSERT_EQ(r.status, wire::parse_status::complete) << r.error;
  EXPECT_EQ(r.frame_.header.request_id, 5u);
  auto d = wire::decode_reply<wire::buffer_reply>(wire::msg_type::alloc, r.frame_);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::protocol_error);
  EXPECT_NE(d.err().message.find("oversized"), std::string::npos) << d.err().message;

  // Garbage: no id to answer, the connection just closes.
  const int g = raw_connect();
  const std::string junk(100, 'z');
  ASSERT_EQ(::send(g, junk.data(), junk.size(), MSG_NOSIGNAL), static_cast<ssize_t>(junk.size()));
  EXPECT_TRUE(read_to_eof(g).empty());
  ::close(g);

  // Truncated: half a frame then EOF.
  const int t = raw_connect();
  auto hello = wire::encode_message(1, wire::hello_request{.client_name = "half"});
  ASSERT_GT(::send(t, hello.data(), hello.size() / 2, MSG_NOSIGNAL), 0);
  ::shutdown(t, SHUT_WR);
  EXPECT_TRUE(read_to_eof(t).empty());
  ::close(t);

  // The daemon keeps serving a, whose buffer is untouched.
  auto after = a.alloc(4 * KiB, {placement::pageable()});
  ASSERT_TRUE(after) << after.err().describe();
  EXPECT_TRUE(a.free(*before));
  EXPECT_TRUE(a.free(*after));
}

TEST_F(DaemonTest, RequestsBeforeHelloAreRefused) {
  const int fd = raw_connect();
  auto req = wire::encode_message(9, wire::stats_request{});
  ASSERT_EQ(::send(fd, req.data(), req.size(), MSG_NOSIGNAL), static_cast<ssize_t>(req.size()));
  ::shutdown(fd, SHUT_WR);
  auto got = read_to_eof(fd);
  ::close(fd);
  wire::frame_parser p(false);
  p.feed(got);
  auto r = p.next();
  ASSERT_EQ(r.status, wire::parse_status::complete) << r.error;
  auto d = wire::decode_reply<wire::stats_reply>(wire::msg_type::stats, r.frame_);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::bad_state);
  EXPECT_NE(d.err().message.find("hello"), std::string::npos);
}

TEST_F(DaemonTest, KilledClientProcessLosesItsBuffers) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    auto c = remote_client::connect(socket_, "doomed");
    std::uint32_t owner = 0;
    if (c) {
      bool ok = true;
      for (int i = 0; i < 3; ++i) ok = ok && c->alloc(32 * KiB, {placement::vram(0), placement::pageable()}, "held");
      if (ok) owner = c->owner();
    }
    (void)!::write(pipefd[1], &owner, sizeof owner);
    for (;;) ::pause();  // holds its buffers until killed
  }
  ::close(pipefd[1]);
  // Whatever fails below, the child does not outlive the test.
  struct reaper {
    pid_t pid;
    ~reaper() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reap{child};
  std::uint32_t owner = 0;
  ASSERT_EQ(::read(pipefd[0], &owner, sizeof owner), static_cast<ssize_t>(sizeof owner));
  ::close(pipefd[0]);
  ASSERT_NE(owner, 0u) << "child could not allocate";

  auto watcher = connect("watcher");
  auto held = [&](std::uint32_t o) {
    auto s = watcher.stats();
    EXPECT_TRUE(s) << s.err().describe();
    std::size_t n = 0;
    if (s) {
      for (const auto& b : s->buffers) n += b.owner == o ? 1 : 0;
    }
    return n;
  };
  EXPECT_EQ(held(owner), 3u);

  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  reap.pid = -1;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (held(owner) != 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(held(owner), 0u) << "buffers of the killed client were not released";
  auto s = watcher.stats();
  ASSERT_TRUE(s);
  for (const auto& c : s->clients) EXPECT_NE(c.owner, owner) << "killed client still listed";
}

TEST_F(DaemonTest, MoveNotifyReachesDynamicImporterWhenAnotherClientEvicts) {
  auto a = connect("importer");
  auto b = connect("hog");
  std::vector<wire::move_notify_event> events;
  a.on_move_notify([&](const wire::move_notify_event& e) { events.push_back(e); });

  auto victim = a.alloc(512 * KiB, {placement::vram(0), placement::pinned()}, "victim");
  ASSERT_TRUE(victim) << victim.err().describe();
  auto att = a.attach(*victim, 0, attach_mode::dynamic);
  ASSERT_TRUE(att) << att.err().describe();
  auto m = a.map(*att);
  ASSERT_TRUE(m) << m.err().describe();
  ASSERT_EQ(m->where, placement::vram(0));
  ASSERT_TRUE(a.unmap(*att));

  // 1 MiB of VRAM: 768 KiB only fits once the victim leaves.
  auto big = b.alloc(768 * KiB, {placement::vram(0)}, "big");
  ASSERT_TRUE(big) << big.err().describe();

  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (events.empty() && std::chrono::steady_clock::now() < deadline) {
    auto n = a.poll_events(100);
    ASSERT_TRUE(n) << n.err().describe();
  }
  ASSERT_FALSE(events.empty()) << "no move_notify event arrived";
  EXPECT_EQ(events[0].attachment, *att);
  EXPECT_EQ(events[0].buffer, *victim);
  EXPECT_EQ(events[0].from, placement::vram(0));
  EXPECT_EQ(events[0].to, placement::pinned());
  // Mapping again tells where it went.
  auto again = a.map(*att);
  ASSERT_TRUE(again) << again.err().describe();
  EXPECT_GT(again->generation, m->generation);
}

TEST_F(DaemonTest, ClientFencesSignalWaitAndExpire) {
  auto a = connect("a");
  std::vector<wire::fence_signaled_event> events;
  a.on_fence_signaled([&](const wire::fence_signaled_event& e) { events.push_back(e); });
  auto buf = a.alloc(16 * KiB, {placement::pageable()});
  ASSERT_TRUE(buf);
  auto f = a.add_client_fence(*buf, fence_usage::write);
  ASSERT_TRUE(f) << f.err().describe();
  EXPECT_EQ(a.wait(*f, 0).code(), errc::timed_out);
  EXPECT_EQ(a.wait(*f, 20).code(), errc::timed_out);
  ASSERT_TRUE(a.signal_client_fence(*f, 0));
  auto w = a.wait(*f, 10000);
  ASSERT_TRUE(w) << w.err().describe();
  EXPECT_EQ(*w, 0);
  EXPECT_EQ(a.signal_client_fence(*f, 0).code(), errc::already_signaled);
  EXPECT_EQ(a.wait(999, 0).code(), errc::not_found);
  EXPECT_EQ(a.signal_client_fence(*f, 5).code(), errc::invalid_argument);

  // A deadline: the daemon signals it with -ETIMEDOUT so nobody stalls.
  auto d = a.add_client_fence(*buf, fence_usage::read, 50);
  ASSERT_TRUE(d);
  auto dw = a.wait(*d, 20000);
  ASSERT_TRUE(dw) << dw.err().describe();
  EXPECT_EQ(*dw, -ETIMEDOUT);
  ASSERT_TRUE(a.poll_events(0));
  bool saw = false;
  for (const auto& e : events) saw = saw || (e.fence == *f && e.error == 0);
  EXPECT_TRUE(saw) << "no fence_signaled event for the signaled fence";
}

TEST_F(DaemonTest, XbufStatShowsDomainsClientsAndBuffers) {
  auto a = connect("stat-subject");
  auto buf = a.alloc(64 * KiB, {placement::vram(0)}, "visible-buffer");
  ASSERT_TRUE(buf);
  const std::string cmd = std::string(XBUF_BIN_DIR) + "/xbuf stat --socket " + socket_;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char line[512];
  while (std::fgets(line, sizeof line, p) != nullptr) out += line;
  EXPECT_EQ(::pclose(p), 0) << out;
  EXPECT_NE(out.find("vram0"), std::string::npos) << out;
  EXPECT_NE(out.find("stat-subject"), std::string::npos) << out;
  EXPECT_NE(out.find("visible-buffer"), std::string::npos) << out;
}

TEST_F(DaemonTest, CAbiAllocExportAndTorchShape) {
  xbuf_client* c = xbuf_connect(socket_.c_str(), "c-abi");
  ASSERT_NE(c, nullptr) << xbuf_last_error();
  std::uint64_t buf = 0;
  ASSERT_EQ(xbuf_alloc(c, 8 * KiB, 0, &buf), 0) << xbuf_last_error();
  int fd = -1;
  std::uint64_t off = 0, size = 0;
  ASSERT_EQ(xbuf_export_fd(c, buf, &fd, &off, &size), 0) << xbuf_last_error();
  EXPECT_GE(fd, 0);
  EXPECT_EQ(size, 8 * KiB);
  ::close(fd);
  EXPECT_EQ(xbuf_free(c, buf), 0);
  EXPECT_LT(xbuf_free(c, buf), 0);
  EXPECT_NE(std::string(xbuf_last_error()), "");
  xbuf_disconnect(c);

  ::setenv("XBUF_SOCKET", socket_.c_str(), 1);
  void* p = xbuf_torch_malloc(100000, 0, nullptr);
  ASSERT_NE(p, nullptr) << xbuf_last_error();
  std::memset(p, 0x5a, 100000);
  xbuf_torch_free(p, 100000, 0, nullptr);
  EXPECT_EQ(xbuf_torch_malloc(-1, 0, nullptr), nullptr);
}

TEST_F(DaemonTest, ShutdownCancelsACallBlockedOnAClientsOwnFence) {
  auto a = connect("stuck");
  auto buf = a.alloc(16 * KiB, {placement::pinned()}, "written-forever");
  ASSERT_TRUE(buf) << buf.err().describe();
  // A writer fence with no deadline, never signaled: a CPU read waits for it
  // forever (timeout 0), holding a worker thread of the daemon.
  auto writer = a.add_client_fence(*buf, fence_usage::write, 0);
  ASSERT_TRUE(writer) << writer.err().describe();
  std::thread stopper([pid = pid_] {
    std::this_thread::sleep_for(100ms);
    ::kill(pid, SIGTERM);
  });
  auto r = a.cpu_begin(*buf, false, 0);
  stopper.join();
  EXPECT_FALSE(r) << "the wait ends by cancellation or by the connection closing, not by success";
  // The daemon must get out of the blocked call and exit by itself.
  int st = 0;
  pid_t done = 0;
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while ((done = ::waitpid(pid_, &st, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(done, pid_) << "xbufd did not stop while a call waited on a client fence; log:\n" << daemon_log();
  pid_ = -1;
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << daemon_log();
}

TEST_F(DaemonTest, ClientKilledWhileBlockedOnItsOwnFenceIsReleased) {
  int pipefd[2];
  ASSERT_EQ(::pipe(pipefd), 0);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(pipefd[0]);
    auto c = remote_client::connect(socket_, "blocked");
    std::uint32_t owner = 0;
    std::optional<buffer_id> buf;
    if (c) {
      auto b = c->alloc(16 * KiB, {placement::pinned()}, "held");
      if (b && c->add_client_fence(*b, fence_usage::write, 0)) {
        owner = c->owner();
        buf = *b;
      }
    }
    (void)!::write(pipefd[1], &owner, sizeof owner);
    // Waits forever in the daemon: a reader waits for the writer fence that
    // nobody will signal (no deadline).
    if (buf) (void)c->cpu_begin(*buf, false, 0);
    for (;;) ::pause();
  }
  ::close(pipefd[1]);
  struct reaper {
    pid_t pid;
    ~reaper() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
      }
    }
  } reap{child};
  std::uint32_t owner = 0;
  ASSERT_EQ(::read(pipefd[0], &owner, sizeof owner), static_cast<ssize_t>(sizeof owner));
  ::close(pipefd[0]);
  ASSERT_NE(owner, 0u) << "child could not set up";
  std::this_thread::sleep_for(300ms);  // let its cpu_begin reach the daemon and block
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  reap.pid = -1;

  auto watcher = connect("watcher");
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  bool released = false;
  while (!released && std::chrono::steady_clock::now() < deadline) {
    auto st = watcher.stats();
    ASSERT_TRUE(st) << st.err().describe();
    released = true;
    for (const auto& b : st->buffers) released = released && b.owner != owner;
    for (const auto& c : st->clients) released = released && c.owner != owner;
    if (!released) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(released) << "a client that died inside a blocked call kept its session; log:\n" << daemon_log();
}

// The daemon on a saved topology: its sim GPUs are that machine's GPUs, and
// a peer mapping is handed out only where that PCI tree carries peer traffic.
class DaemonTopologyTest : public DaemonTest, public ::testing::WithParamInterface<const char*> {
 protected:
  std::vector<std::string> daemon_args() const override {
    return {"--topology", std::string(XBUF_TEST_DATA_DIR) + "/topologies/" + GetParam(),
            "--sim-vram", "1M", "--pinned", "4M", "--pageable", "16M"};
  }
};

TEST_P(DaemonTopologyTest, PeerMappingFollowsThePciTree) {
  auto a = connect("exporter");
  auto buf = a.alloc(64 * KiB, {placement::vram(0), placement::pinned()}, "on-gpu0");
  ASSERT_TRUE(buf) << buf.err().describe();
  auto att = a.attach(*buf, 1, attach_mode::dynamic, /*peer_capable=*/true);
  ASSERT_TRUE(att) << att.err().describe();
  auto m = a.map(*att);
  ASSERT_TRUE(m) << m.err().describe();
  const bool switch_peers = std::string(GetParam()) == "nvidiaDGX2.xml";
  if (switch_peers) {
    // GPU0 and GPU1 of a DGX-2 share a PCIe switch (and NVSwitches).
    EXPECT_TRUE(m->peer) << m->reason;
    EXPECT_EQ(m->where, placement::vram(0));
  } else {
    // Tesla M2070s on root ports of a host bridge the kernel does not allow.
    EXPECT_FALSE(m->peer) << m->reason;
    EXPECT_EQ(m->where, placement::pinned()) << m->reason;
  }
  EXPECT_FALSE(m->reason.empty());
}

// Both machines have two NUMA nodes: the daemon keeps a pageable domain on
// each (8 MiB of the 16), and a buffer a remote client's GPU evicts lands on
// that GPU's node - seen, and asked for, over the wire.
TEST_P(DaemonTopologyTest, PageableMemoryIsKeptPerNumaNodeAndEvictionsStayNearTheGpu) {
  auto a = connect("numa");
  auto st = a.stats();
  ASSERT_TRUE(st) << st.err().describe();
  std::map<std::string, std::uint64_t> capacity;
  for (const auto& d : st->domains) {
    if (d.where.kind == memory_kind::host_pageable) capacity[d.name] = d.capacity;
  }
  EXPECT_EQ(capacity, (std::map<std::string, std::uint64_t>{{"pageable-node0", 8 * MiB}, {"pageable-node1", 8 * MiB}}));
  int last_gpu = -1;
  for (const auto& d : st->domains) {
    if (d.where.kind == memory_kind::device) last_gpu = std::max(last_gpu, d.where.device);
  }
  ASSERT_GE(last_gpu, 1);
  auto victim = a.alloc(768 * KiB, {placement::vram(last_gpu), placement::pageable()}, "victim");
  ASSERT_TRUE(victim) << victim.err().describe();
  auto evictor = a.alloc(768 * KiB, {placement::vram(last_gpu)}, "evictor");
  ASSERT_TRUE(evictor) << evictor.err().describe();
  auto on_node0 = a.alloc(64 * KiB, {placement::pageable(0)}, "node0");
  ASSERT_TRUE(on_node0) << on_node0.err().describe();
  auto nowhere = a.alloc(64 * KiB, {placement::pageable(5)}, "node5");
  ASSERT_FALSE(nowhere);
  EXPECT_EQ(nowhere.code(), errc::invalid_argument);
  EXPECT_NE(nowhere.err().message.find("pageable-node5"), std::string::npos) << nowhere.err().message;
  st = a.stats();
  ASSERT_TRUE(st) << st.err().describe();
  std::map<std::string, std::string> where;
  for (const auto& b : st->buffers) where[b.name] = to_string(b.where);
  // The last GPU of both machines sits on socket 1.
  EXPECT_EQ(where["victim"], "pageable-node1");
  EXPECT_EQ(where["evictor"], "vram" + std::to_string(last_gpu));
  EXPECT_EQ(where["node0"], "pageable-node0");
}

INSTANTIATE_TEST_SUITE_P(RealMachines, DaemonTopologyTest,
                         ::testing::Values("nvidiaDGX2.xml", "24em64t-2n6c2t-pci.xml"),
                         [](const auto& param_info) {
                           return std::string(param_info.param).find("DGX2") != std::string::npos ? "Dgx2"
                                                                                             : "Westmere";
                         });

TEST(DaemonOptionsTest, TopologyWithoutGpusOrUnreadableIsRefused) {
  const std::string bin = std::string(XBUF_BIN_DIR) + "/xbufd";
  for (const char* file : {"devel09-pci.xml", "does-not-exist.xml"}) {
    const std::string cmd = bin + " --socket /tmp/xbufd-never.sock --backend sim --topology " +
                            std::string(XBUF_TEST_DATA_DIR) + "/topologies/" + file + " 2>/dev/null";
    const int st = std::system(cmd.c_str());
    ASSERT_TRUE(WIFEXITED(st)) << file;
    EXPECT_EQ(WEXITSTATUS(st), 2) << file;
  }
}

// The attack run's stall: clients that each make a CPU read wait for their
// own never-signaled writer fence used to hold every worker thread, and
// nobody else got a reply until they hung up. Now those waits are the
// sessions' (no thread), so a third client is served meanwhile.
TEST_F(DaemonTest, ClientsWaitingOnTheirOwnFencesDoNotStallOthers) {
  std::vector<remote_client> stuck;
  for (int i = 0; i < 4; ++i) {  // twice the worker threads
    auto c = connect("stuck" + std::to_string(i));
    auto buf = c.alloc(16 * KiB, {placement::pageable()});
    ASSERT_TRUE(buf) << buf.err().describe();
    ASSERT_TRUE(c.add_client_fence(*buf, fence_usage::write, 0));
    // The reply would come when the fence does: send and do not read it.
    const auto begin = wire::encode_message(1000 + static_cast<std::uint64_t>(i),
                                            wire::cpu_begin_request{.buffer = *buf, .write = false, .timeout_ms = 0});
    ASSERT_TRUE(c.send_raw(begin));
    stuck.push_back(std::move(c));
  }
  std::this_thread::sleep_for(200ms);  // let every cpu_begin reach the daemon
  auto other = std::async(std::launch::async, [this] {
    auto c = remote_client::connect(socket_, "other");
    if (!c) return c.err().describe();
    auto b = c->alloc(64 * KiB, {placement::vram(0), placement::pageable()});
    if (!b) return b.err().describe();
    if (auto st = c->stats(); !st) return st.err().describe();
    if (auto fr = c->free(*b); !fr) return fr.err().describe();
    return std::string("served");
  });
  // Bounded, not timed: without the fix no reply comes until they hang up.
  const bool served_meanwhile = other.wait_for(20s) == std::future_status::ready;
  stuck.clear();  // hang up: their fences are signaled with -ECONNRESET, their buffers freed
  EXPECT_TRUE(served_meanwhile) << "another client got no reply while others waited on their own fences";
  EXPECT_EQ(other.get(), "served");
}

// Every client fence has a deadline of at most the daemon's maximum: one
// given none (which used to be "never") or a longer one is forced then.
class CappedFenceDaemonTest : public DaemonTest {
 protected:
  std::vector<std::string> daemon_args() const override {
    auto a = DaemonTest::daemon_args();
    a.insert(a.end(), {"--max-fence-deadline", "0.2"});
    return a;
  }
};

TEST_F(CappedFenceDaemonTest, ClientFencesAreForcedAtTheDaemonsMaximumDeadline) {
  auto a = connect("slow");
  auto buf = a.alloc(16 * KiB, {placement::pageable()});
  ASSERT_TRUE(buf) << buf.err().describe();
  auto none = a.add_client_fence(*buf, fence_usage::write, 0);
  auto longer = a.add_client_fence(*buf, fence_usage::read, 3'600'000);
  ASSERT_TRUE(none && longer);
  for (auto f : {*none, *longer}) {
    auto w = a.wait(f, 20000);
    ASSERT_TRUE(w) << "fence " << f << " was not forced: " << w.err().describe();
    EXPECT_EQ(*w, -ETIMEDOUT);
  }
  // And the CPU access that waited for them goes through.
  auto r = a.cpu_begin(*buf, true, 20000);
  ASSERT_TRUE(r) << r.err().describe();
  EXPECT_TRUE(a.cpu_end(*buf));
}

// The attack run's hog held every domain, and the next tenant's 4 KiB
// allocation got out_of_memory. With a quota per client per domain, the hog
// is refused first and the next tenant is served.
class QuotaDaemonTest : public DaemonTest {
 protected:
  std::vector<std::string> daemon_args() const override {
    auto a = DaemonTest::daemon_args();
    a.insert(a.end(), {"--quota-per-domain", "512K", "--max-buffers", "64"});
    return a;
  }
};

TEST_F(QuotaDaemonTest, OneTenantCannotHoldEveryDomain) {
  auto hog = connect("hog");
  const std::vector<placement> everywhere{placement::vram(0), placement::vram(1), placement::pinned(),
                                          placement::pageable()};
  int held = 0;
  result<buffer_id> last = fail(errc::bad_state, "none");
  while ((last = hog.alloc(64 * KiB, everywhere)) && held < 1000) ++held;
  ASSERT_FALSE(last);
  EXPECT_EQ(last.code(), errc::quota_exceeded) << last.err().describe();
  EXPECT_EQ(held, 32) << "4 domains x 512 KiB / 64 KiB";
  auto next = connect("next");
  auto mine = next.alloc(4 * KiB, everywhere);
  ASSERT_TRUE(mine) << "the next tenant was starved: " << mine.err().describe();
}

}  // namespace
}  // namespace xbuf
