// SPDX-License-Identifier: MIT
//
// What a client may learn from xbufd (DESIGN.md "A client sees only its
// own"; issue 9, items 8 and 11), against the real daemon binary: a tenant
// (a child process that became uid 65534) sees its own client row and
// buffers plus per-domain totals, the operator (root, the daemon's uid)
// sees every tenant; map replies carry offsets within the export, never a
// daemon address; stats stays one frame with more clients and buffers than
// it lists, and `xbuf stat` says which view it shows and what it left out.
//
// Needs root (to start a client as another uid); skipped otherwise. Waits
// are bounded by deadlines.
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "client/remote_client.hpp"
#include "server/protocol.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using client::remote_client;
using namespace std::chrono_literals;
using test::read_file;

constexpr std::uint64_t KiB = 1024;
constexpr uid_t nobody = 65534;

// Everything a command prints on stdout, and its exit status.
std::pair<std::string, int> run_command(const std::string& cmd) {
  std::string out;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return {"popen failed", -1};
  char buf[512];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  return {out, ::pclose(p)};
}

// xbufd with the sim backend on a socket in its own directory, which (like
// the socket, --socket-mode 0666) another uid can reach.
class VisibilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: a tenant client runs as uid " << nobody;
    char dir[] = "/tmp/xbufd-visibility-XXXXXX";
    ASSERT_NE(::mkdtemp(dir), nullptr);
    dir_ = dir;
    ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
    socket_ = dir_ + "/xbuf.sock";
    log_ = dir_ + "/xbufd.log";
    test::daemon_spec spec{.args = {"--pageable", "16M", "--socket-mode", "0666"}, .socket = socket_,
                           .nofile = {}, .uid = {}, .env = {}};
    daemon_ = std::make_unique<test::daemon_process>(std::move(spec), log_);
    ASSERT_TRUE(daemon_->wait_up(socket_)) << "xbufd did not come up on " << socket_ << "; log:\n"
                                           << read_file(log_);
  }

  void TearDown() override {
    if (daemon_) {
      const int st = daemon_->stop();
      EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << "xbufd status " << st;
    }
    if (HasFailure() && !dir_.empty()) std::fprintf(stderr, "xbufd log:\n%s\n", read_file(log_).c_str());
    if (!dir_.empty()) std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  remote_client connect(const std::string& name) {
    auto c = remote_client::connect(socket_, name);
    if (!c) throw std::runtime_error("connect: " + c.err().describe());
    return std::move(*c);
  }

  // The tenant child (uid 65534) runs it: from a directory that user can reach.
  std::string xbuf_stat() const { return test::bin_dir_for(nobody, {"xbuf"}) + "/xbuf stat --socket " + socket_; }

  std::string dir_, socket_, log_;
  std::unique_ptr<test::daemon_process> daemon_;
};

// A client process running as uid 65534: connects, allocates a buffer named
// `buffer_name`, asks for stats and runs `xbuf stat`, writes what it saw to
// a pipe as "key=value" lines, then keeps its connection (and buffer) until
// the parent closes the other pipe.
class tenant_process {
 public:
  tenant_process(const std::string& socket, const std::string& stat_cmd, const std::string& buffer_name) {
    int report[2];
    int hold[2];
    if (::pipe(report) != 0 || ::pipe(hold) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(report[0]);
      ::close(hold[1]);
      run_child(socket, stat_cmd, buffer_name, report[1], hold[0]);
    }
    ::close(report[1]);
    ::close(hold[0]);
    report_fd_ = report[0];
    hold_fd_ = hold[1];
  }
  ~tenant_process() { finish(); }
  tenant_process(const tenant_process&) = delete;
  tenant_process& operator=(const tenant_process&) = delete;

  // Everything up to the "ready" line (bounded: the child's stats and
  // `xbuf stat` must be done within 20 s).
  std::string report() {
    std::string all;
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (all.find("ready\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      char buf[4096];
      const ssize_t k = ::read(report_fd_, buf, sizeof buf);
      if (k <= 0) break;
      all.append(buf, static_cast<std::size_t>(k));
    }
    return all;
  }

  // Lets the child go and returns its exit status.
  int finish() {
    if (hold_fd_ >= 0) ::close(hold_fd_);
    if (report_fd_ >= 0) ::close(report_fd_);
    hold_fd_ = report_fd_ = -1;
    int st = -1;
    if (pid_ > 0) ::waitpid(pid_, &st, 0);
    pid_ = -1;
    return st;
  }

 private:
  [[noreturn]] static void run_child(const std::string& socket, const std::string& stat_cmd,
                                     const std::string& buffer_name, int out, int hold) {
    std::string r;
    auto say = [&](const std::string& line) { r += line + "\n"; };
    if (::setgroups(0, nullptr) != 0 || ::setgid(nobody) != 0 || ::setuid(nobody) != 0) {
      say("error=setuid failed");
    } else if (auto c = remote_client::connect(socket, "tenant-child"); !c) {
      say("error=connect: " + c.err().describe());
    } else if (auto b = c->alloc(16 * KiB, {placement::pageable()}, buffer_name); !b) {
      say("error=alloc: " + b.err().describe());
    } else if (auto s = c->stats(); !s) {
      say("error=stats: " + s.err().describe());
    } else {
      say("uid=" + std::to_string(::getuid()));
      say("owner=" + std::to_string(c->owner()));
      say("buffer=" + std::to_string(*b));
      say("tenant_view=" + std::to_string(s->tenant_view ? 1 : 0));
      say("clients=" + std::to_string(s->clients.size()));
      for (const auto& cl : s->clients) {
        say("client=" + std::to_string(cl.owner) + " uid " + std::to_string(cl.uid) + " " + cl.name);
      }
      say("buffers=" + std::to_string(s->buffers.size()));
      for (const auto& bf : s->buffers) {
        say("listed=" + std::to_string(bf.id) + " owner " + std::to_string(bf.owner) + " " + bf.name);
      }
      std::uint64_t used = 0;
      for (const auto& d : s->domains) used += d.used;
      say("domains_used=" + std::to_string(used));
      // The memory timeline: its own events only.
      if (auto t = c->trace(0); !t) {
        say("error=trace: " + t.err().describe());
      } else {
        for (const auto& e : t->events) {
          say("event=" + std::to_string(e.kind) + " owner " + std::to_string(e.owner) + " buffer " +
              std::to_string(e.buffer));
        }
      }
      const auto [text, status] = run_command(stat_cmd);
      say("stat_status=" + std::to_string(status));
      std::istringstream in(text);
      for (std::string line; std::getline(in, line);) say("stat| " + line);
      say("ready");
      (void)::write(out, r.data(), r.size());
      char x = 0;
      (void)::read(hold, &x, 1);  // until the parent is done looking
      ::_exit(0);
    }
    say("ready");
    (void)::write(out, r.data(), r.size());
    ::_exit(1);
  }

  pid_t pid_ = -1;
  int report_fd_ = -1;
  int hold_fd_ = -1;
};

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) {
    if (l == line) return true;
  }
  return false;
}

// A line of the child's `xbuf stat` output holding `what`.
bool stat_line_with(const std::string& report, const std::string& what) {
  std::istringstream in(report);
  for (std::string l; std::getline(in, l);) {
    if (l.rfind("stat| ", 0) == 0 && l.find(what) != std::string::npos) return true;
  }
  return false;
}

// Before: the uid-65534 client's stats listed root's client row and buffer
// ("root-secret-buffer", its id and size) next to its own (tenant_view,
// clients=1 and buffers=1 all failed), and `xbuf stat` printed them for it;
// nothing said which view it was.
TEST_F(VisibilityTest, TenantSeesOnlyItsOwnAndTheOperatorSeesEveryTenant) {
  auto root = connect("root-job");
  auto mine = root.alloc(64 * KiB, {placement::vram(0)}, "root-secret-buffer");
  ASSERT_TRUE(mine) << mine.err().describe();

  tenant_process child(socket_, xbuf_stat(), "nobody-buffer");
  const std::string r = child.report();
  ASSERT_EQ(r.find("error="), std::string::npos) << r;
  ASSERT_TRUE(has_line(r, "uid=65534")) << r;
  EXPECT_TRUE(has_line(r, "tenant_view=1")) << r;
  EXPECT_TRUE(has_line(r, "clients=1")) << r;
  EXPECT_NE(r.find("uid 65534 tenant-child"), std::string::npos) << r;
  EXPECT_TRUE(has_line(r, "buffers=1")) << r;
  EXPECT_NE(r.find(" nobody-buffer"), std::string::npos) << r;
  // Nothing of root's: not its buffer's name, not its client's name.
  EXPECT_EQ(r.find("root-secret-buffer"), std::string::npos) << r;
  EXPECT_EQ(r.find("root-job"), std::string::npos) << r;
  EXPECT_EQ(r.find("listed=" + std::to_string(*mine) + " "), std::string::npos) << r;
  // Its trace: its own allocation, none of root's events.
  const auto owner_at = r.find("owner=");
  ASSERT_NE(owner_at, std::string::npos) << r;
  const std::string own = std::to_string(std::stoul(r.substr(owner_at + 6)));
  EXPECT_NE(r.find("event=1 owner " + own + " "), std::string::npos) << "its own alloc event:\n" << r;
  EXPECT_EQ(r.find("buffer " + std::to_string(*mine) + "\n"), std::string::npos) << "root's event:\n" << r;
  std::istringstream events(r);
  for (std::string l; std::getline(events, l);) {
    if (l.rfind("event=", 0) == 0) {
      EXPECT_NE(l.find(" owner " + own + " "), std::string::npos) << l;
    }
  }
  // Totals count root's bytes too: 64 KiB of root's + 16 KiB of its own.
  const auto used_at = r.find("domains_used=");
  ASSERT_NE(used_at, std::string::npos) << r;
  EXPECT_GE(std::stoull(r.substr(used_at + 13)), 80 * KiB) << r;
  // `xbuf stat` as the tenant: says so, shows its own, nothing of root's.
  EXPECT_TRUE(has_line(r, "stat_status=0")) << r;
  EXPECT_NE(r.find("your buffers; totals for every tenant"), std::string::npos) << r;
  EXPECT_TRUE(stat_line_with(r, "nobody-buffer")) << "its own buffer is in its `xbuf stat`:\n" << r;
  EXPECT_TRUE(stat_line_with(r, "tenant-child")) << "so is its uid's other connection:\n" << r;

  // The operator (root, also the daemon's uid) sees both tenants.
  auto all = root.stats();
  ASSERT_TRUE(all) << all.err().describe();
  EXPECT_FALSE(all->tenant_view);
  bool saw_child = false;
  bool saw_child_buffer = false;
  bool saw_own_buffer = false;
  for (const auto& c : all->clients) saw_child = saw_child || (c.uid == nobody && c.name == "tenant-child");
  for (const auto& b : all->buffers) {
    saw_child_buffer = saw_child_buffer || b.name == "nobody-buffer";
    saw_own_buffer = saw_own_buffer || b.id == *mine;
  }
  EXPECT_TRUE(saw_child);
  EXPECT_TRUE(saw_child_buffer);
  EXPECT_TRUE(saw_own_buffer);
  const auto [text, status] = run_command(xbuf_stat());
  EXPECT_EQ(status, 0) << text;
  EXPECT_NE(text.find("operator view"), std::string::npos) << text;
  EXPECT_NE(text.find("nobody-buffer"), std::string::npos) << text;
  EXPECT_NE(text.find("root-secret-buffer"), std::string::npos) << text;
  EXPECT_EQ(child.finish(), 0);
}

// Before: the map reply's range was the daemon's pointer to the buffer (a
// host address like 0x7f..., far past the 16 KiB export).
TEST_F(VisibilityTest, MapRepliesCarryOffsetsWithinTheExportNotDaemonAddresses) {
  auto c = connect("mapper");
  ASSERT_TRUE(c.alloc(8 * KiB, {placement::pageable()}, "before"));  // not at the start of the heap
  auto buf = c.alloc(16 * KiB, {placement::pageable()}, "mapped");
  ASSERT_TRUE(buf) << buf.err().describe();
  auto att = c.attach(*buf, -1, attach_mode::pinned);
  ASSERT_TRUE(att) << att.err().describe();
  auto m = c.map(*att);
  ASSERT_TRUE(m) << m.err().describe();
  ASSERT_EQ(m->ranges.size(), 1u);
  auto e = c.export_fd(*buf);
  ASSERT_TRUE(e) << e.err().describe();
  const wire::wire_range r = m->ranges[0];
  EXPECT_EQ(r.size, 16 * KiB);
  EXPECT_LT(r.offset, e->size) << "map reply carries " << r.offset << ", not an offset within the export";
  EXPECT_EQ(e->offset + r.offset, e->offset);
  // The offset locates the buffer in the fd: bytes written there are what
  // a second export of the same buffer reads back at its offset.
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t at = e->offset + r.offset;
  const std::uint64_t start = at & ~(page - 1);
  const std::size_t len = static_cast<std::size_t>(at - start + r.size);
  void* base = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED, e->fd, static_cast<off_t>(start));
  ASSERT_NE(base, MAP_FAILED) << std::strerror(errno);
  std::memset(static_cast<char*>(base) + (at - start), 0x3c, static_cast<std::size_t>(r.size));
  ::munmap(base, len);
  auto again = c.export_fd(*buf);
  ASSERT_TRUE(again) << again.err().describe();
  std::vector<std::uint8_t> got(static_cast<std::size_t>(r.size));
  EXPECT_EQ(::pread(again->fd, got.data(), got.size(), static_cast<off_t>(again->offset)),
            static_cast<ssize_t>(got.size()));
  EXPECT_EQ(got, std::vector<std::uint8_t>(got.size(), 0x3c));
  ::close(e->fd);
  ::close(again->fd);
}

// Before: with ~705 clients the stats reply outgrew max_payload and every
// `xbuf stat` failed; an alloc with 13,000 placements got a 78 KB error.
TEST_F(VisibilityTest, StatsStaysOneFrameAndXbufStatReportsWhatWasLeftOut) {
  std::vector<remote_client> many;
  const std::size_t clients = wire::max_stat_clients + 20;
  for (std::size_t i = 0; i < clients; ++i) many.push_back(connect("crowd-" + std::to_string(i)));
  const std::size_t buffers = wire::max_stat_buffers + 30;
  for (std::size_t i = 0; i < buffers; ++i) {
    auto b = many[i % many.size()].alloc(4 * KiB, {placement::pageable()}, std::string(wire::max_name_bytes, 'n'));
    ASSERT_TRUE(b) << i << ": " << b.err().describe();
  }
  auto s = many[0].stats();
  ASSERT_TRUE(s) << s.err().describe();
  EXPECT_FALSE(s->tenant_view);
  EXPECT_EQ(s->clients.size(), wire::max_stat_clients);
  EXPECT_GE(s->more_clients, 20u);
  EXPECT_EQ(s->buffers.size(), wire::max_stat_buffers);
  EXPECT_EQ(s->more_buffers, 30u);

  const auto [text, status] = run_command(xbuf_stat());
  EXPECT_EQ(status, 0) << text;
  EXPECT_NE(text.find("more clients"), std::string::npos) << text;
  EXPECT_NE(text.find("and 30 more buffers"), std::string::npos) << text;

  std::vector<placement> too_many(13000, placement::vram(0));
  auto refused = many[0].alloc(4 * KiB, too_many, "x");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.code(), errc::invalid_argument);
  EXPECT_NE(refused.err().message.find("13000 placements, at most 16"), std::string::npos) << refused.err().message;
  EXPECT_LT(refused.err().message.size(), 128u);
  EXPECT_TRUE(many[0].stats()) << "the connection survives the refusal";
}

}  // namespace
}  // namespace xbuf
