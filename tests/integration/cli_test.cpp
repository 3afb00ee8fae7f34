// SPDX-License-Identifier: MIT
//
// The command-line habits of `xbuf` and `xbufd` (issue 12, items 1, 7 and
// 8), against the real binaries: --version from the project version, every
// --help on stdout with exit 0, strict numbers (a bad one exits 2 naming
// the flag and the value), a missing daemon exits 1 with a hint to start
// it, $XBUF_SOCKET reaches `xbuf stat`, `xbuf stat --json` and `xbuf topo
// --json` are valid JSON with their schema key, and `xbuf demo` ends with
// every allocation served and leaves no freed-but-attached buffer behind.
//
// Each command runs as a child process with stdout and stderr apart (so a
// test can say which one a text went to) and XBUF_SOCKET unset unless the
// test sets it. Waits are bounded by deadlines; nothing asserts a duration.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "client/remote_client.hpp"
#include "server/protocol.hpp"
#include "tests/common/bin_dir.hpp"
#include "tests/common/json.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using client::remote_client;
using namespace std::chrono_literals;
namespace json = test::json;

struct run_result {
  int rc = -1;  // the exit status; -1 when killed or not started
  std::string out, err;
};

using env_list = std::vector<std::pair<std::string, std::optional<std::string>>>;

// One command as a child process: XBUF_BIN_DIR/argv[0] with argv, the
// environment changed as `env` says (XBUF_SOCKET unset unless named there).
class command {
 public:
  explicit command(std::vector<std::string> argv, env_list env = {}) {
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) return;
    const std::string bin = test::bin_dir() + "/" + argv[0];
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(out[1], 1);
      ::dup2(err[1], 2);
      ::unsetenv("XBUF_SOCKET");
      for (auto& [k, v] : env) {
        if (v)
          ::setenv(k.c_str(), v->c_str(), 1);
        else
          ::unsetenv(k.c_str());
      }
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      ::execv(bin.c_str(), args.data());
      std::perror("exec");
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    out_ = out[0];
    err_ = err[0];
  }
  command(const command&) = delete;
  command& operator=(const command&) = delete;
  ~command() { (void)finish(1s); }

  // Reads both streams to their end and waits for the exit; past `limit`
  // the child is killed (rc -1).
  run_result finish(std::chrono::seconds limit = 60s) {
    run_result r;
    if (pid_ <= 0) return r;
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (out_ >= 0 || err_ >= 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        ::kill(pid_, SIGKILL);
        break;
      }
      pollfd p[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
      if (::poll(p, 2, static_cast<int>(left.count())) < 0) break;
      drain(p[0], out_, r.out);
      drain(p[1], err_, r.err);
    }
    for (int* fd : {&out_, &err_}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
    r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return r;
  }

 private:
  static void drain(const pollfd& p, int& fd, std::string& to) {
    if (fd < 0 || p.revents == 0) return;
    char buf[4096];
    const ssize_t k = ::read(fd, buf, sizeof buf);
    if (k > 0) {
      to.append(buf, static_cast<std::size_t>(k));
    } else {
      ::close(fd);
      fd = -1;
    }
  }

  pid_t pid_ = -1;
  int out_ = -1, err_ = -1;
};

run_result run(std::vector<std::string> argv, env_list env = {}) {
  return command(std::move(argv), std::move(env)).finish();
}

std::string show(const run_result& r) {
  return "rc " + std::to_string(r.rc) + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
}

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// Parses or fails the test, showing where the text went wrong.
json::value parsed(const std::string& text) {
  std::size_t where = 0;
  auto v = json::parse(text, &where);
  EXPECT_TRUE(v) << "invalid JSON at offset " << where << ": " << text.substr(0, 400);
  return v ? *v : json::value{};
}

// A private directory for socket paths that do not exist or hold no daemon.
class scratch_dir {
 public:
  scratch_dir() {
    char d[] = "/tmp/xbuf-cli-XXXXXX";
    if (::mkdtemp(d) != nullptr) path_ = d;
  }
  ~scratch_dir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  scratch_dir(const scratch_dir&) = delete;
  scratch_dir& operator=(const scratch_dir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// The daemon the demo test runs against: run.sh's sizes (two 32 MiB sim
// GPUs, xbufd's default host domains), not daemon_spec's small defaults.
const std::vector<std::string> demo_daemon_args = {"--sim-devices", "2",    "--sim-vram", "32M",
                                                   "--pinned",      "256M", "--pageable", "1G"};

TEST(CliTest, VersionOfBothBinariesIsTheProjectVersion) {
  const std::string want =
      " " XBUF_VERSION " (protocol " + std::to_string(wire::protocol_version) + ")\n";
  for (const char* bin : {"xbuf", "xbufd"}) {
    for (const char* flag : {"--version", "-V"}) {
      const run_result r = run({bin, flag});
      EXPECT_EQ(r.rc, 0) << bin << " " << flag << "\n" << show(r);
      EXPECT_EQ(r.out, std::string(bin) + want) << bin << " " << flag;
      EXPECT_EQ(r.err, "") << bin << " " << flag;
    }
  }
}

TEST(CliTest, EveryHelpIsOnStdoutWithExitZeroAndTheExitCodes) {
  const std::vector<std::vector<std::string>> helps = {
      {"xbuf", "--help"},     {"xbuf", "-h"},
      {"xbuf", "help"},       {"xbuf", "stat", "--help"},
      {"xbuf", "stat", "-h"}, {"xbuf", "demo", "--help"},
      {"xbuf", "demo", "-h"}, {"xbuf", "topo", "--help"},
      {"xbuf", "topo", "-h"}, {"xbuf", "top", "--help"},
      {"xbuf", "top", "-h"},  {"xbufd", "--help"},
      {"xbufd", "-h"}};
  for (const auto& argv : helps) {
    std::string name;
    for (const auto& a : argv) name += a + " ";
    const run_result r = run(argv);
    EXPECT_EQ(r.rc, 0) << name << "\n" << show(r);
    EXPECT_EQ(r.err, "") << name;
    EXPECT_EQ(r.out.rfind("usage: " + argv[0], 0), 0u) << name << "\n" << r.out;
    EXPECT_TRUE(has(r.out, "exit status: 0")) << name << "\n" << r.out;
    EXPECT_TRUE(has(r.out, "2 usage")) << name << "\n" << r.out;
  }
}

TEST(CliTest, TopLevelHelpListsEverySubcommandOption) {
  const run_result r = run({"xbuf", "--help"});
  ASSERT_EQ(r.rc, 0) << show(r);
  for (const char* want :
       {"topo [--xml FILE] [--json] [--verbose]", "stat [--socket PATH] [--json]",
        "demo [--socket PATH] [--seconds N] [--name NAME]", "top [--socket PATH] [--interval SECS]",
        "$XBUF_SOCKET", "--version"}) {
    EXPECT_TRUE(has(r.out, want)) << want << "\n" << r.out;
  }
}

TEST(CliTest, UsageErrorsExitTwoOnStderr) {
  const std::vector<std::vector<std::string>> bad = {{"xbuf"},
                                                     {"xbuf", "bogus"},
                                                     {"xbuf", "stat", "--bogus"},
                                                     {"xbuf", "stat", "--socket"},
                                                     {"xbuf", "demo", "--seconds"},
                                                     {"xbuf", "demo", "--name"},
                                                     {"xbuf", "topo", "--bogus"},
                                                     {"xbuf", "top", "--interval", "0"},
                                                     {"xbuf", "top", "--interval", "1x"},
                                                     {"xbufd", "--bogus"}};
  for (const auto& argv : bad) {
    std::string name;
    for (const auto& a : argv) name += a + " ";
    const run_result r = run(argv);
    EXPECT_EQ(r.rc, 2) << name << "\n" << show(r);
    EXPECT_NE(r.err, "") << name;
  }
}

// Each value is refused whole ("2x" is not 2), with the flag and the value
// in the message. xbufd is given a socket it cannot bind first, so a value
// it wrongly took would end in exit 1 rather than a daemon left running.
TEST(CliTest, BadNumbersExitTwoNamingTheFlagAndTheValue) {
  scratch_dir dir;
  const std::string nowhere = dir.path() + "/no/such/dir/xbuf.sock";
  const std::vector<std::pair<std::string, std::string>> xbufd_cases = {
      {"--sim-devices", "2x"},        {"--sim-devices", "0"},         {"--stats-interval", "abc"},
      {"--stats-interval", "-1"},     {"--max-buffers", "+3"},        {"--max-connections", "1e3"},
      {"--sim-vram", "12Q"},          {"--sim-vram", "32MB"},         {"--pinned", "0"},
      {"--pageable", "1T"},           {"--quota-per-domain", " 4M"},  {"--max-queued-bytes", "4K"},
      {"--frame-timeout", "1.2345"},  {"--max-fence-deadline", "-1"}, {"--alloc-wait", "forever"},
      {"--promote-interval", "10ms"}, {"--socket-mode", "0999"}};
  for (const auto& [flag, value] : xbufd_cases) {
    const run_result r = run({"xbufd", "--backend", "sim", "--socket", nowhere, flag, value});
    EXPECT_EQ(r.rc, 2) << flag << " " << value << "\n" << show(r);
    EXPECT_TRUE(has(r.err, "xbufd: " + flag + ": '" + value + "'")) << flag << " " << value << "\n"
                                                                    << r.err;
  }
  for (const std::string value : {"2x", "0", "-1", "", "86401", "1.5", "0x10"}) {
    const run_result r = run({"xbuf", "demo", "--socket", nowhere, "--seconds", value});
    EXPECT_EQ(r.rc, 2) << "'" << value << "'\n" << show(r);
    EXPECT_TRUE(
        has(r.err, "xbuf demo: --seconds: '" + value + "' is not a whole number in 1..86400"))
        << "'" << value << "'\n"
        << r.err;
  }
}

// No file, and a socket file nobody accepts on (a daemon that died): both
// are "nobody listens here", a runtime error with the way out in it.
TEST(CliTest, MissingDaemonExitsOneWithAHintToStartIt) {
  scratch_dir dir;
  const std::string missing = dir.path() + "/missing.sock";
  const std::string stale = dir.path() + "/stale.sock";
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, stale.c_str(), stale.size() + 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0)
      << std::strerror(errno);
  // Bound, never listening: connect() is refused.
  for (const std::string& path : {missing, stale}) {
    for (const std::vector<std::string>& argv :
         {std::vector<std::string>{"xbuf", "stat", "--socket", path},
          std::vector<std::string>{"xbuf", "demo", "--seconds", "1", "--socket", path}}) {
      const run_result r = run(argv);
      EXPECT_EQ(r.rc, 1) << argv[1] << " " << path << "\n" << show(r);
      EXPECT_EQ(r.out, "") << argv[1];
      EXPECT_TRUE(has(r.err, "no xbufd listening at " + path)) << r.err;
      EXPECT_TRUE(has(r.err, "start it: xbufd --socket " + path)) << r.err;
      EXPECT_TRUE(has(r.err, "XBUF_SOCKET")) << r.err;
    }
  }
  ::close(fd);
  // The path from XBUF_SOCKET is the one named.
  const run_result r = run({"xbuf", "stat"}, {{"XBUF_SOCKET", missing}});
  EXPECT_EQ(r.rc, 1) << show(r);
  EXPECT_TRUE(has(r.err, "no xbufd listening at " + missing)) << r.err;
}

class CliDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<test::scratch_daemon>(args());
    ASSERT_TRUE(daemon_->up()) << "xbufd did not come up; log:\n" << daemon_->log();
  }
  void TearDown() override {
    if (HasFailure() && daemon_) std::fprintf(stderr, "xbufd log:\n%s\n", daemon_->log().c_str());
  }
  virtual std::vector<std::string> args() const { return {"--pageable", "16M"}; }

  const std::string& socket() const { return daemon_->socket(); }
  remote_client connect(const std::string& name) {
    auto c = remote_client::connect(socket(), name);
    if (!c) throw std::runtime_error("connect: " + c.err().describe());
    return std::move(*c);
  }

  std::unique_ptr<test::scratch_daemon> daemon_;
};

TEST_F(CliDaemonTest, XbufSocketIsHonouredAndSocketOverridesIt) {
  auto a = connect("env-subject");
  auto buf = a.alloc(64 << 10, {placement::pageable()}, "env-buffer");
  ASSERT_TRUE(buf) << buf.err().describe();

  const run_result r = run({"xbuf", "stat"}, {{"XBUF_SOCKET", socket()}});
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_TRUE(has(r.out, "xbufd on " + socket())) << r.out;
  EXPECT_TRUE(has(r.out, "env-subject")) << r.out;
  EXPECT_TRUE(has(r.out, "env-buffer")) << r.out;

  const run_result j = run({"xbuf", "stat", "--json"}, {{"XBUF_SOCKET", socket()}});
  ASSERT_EQ(j.rc, 0) << show(j);
  EXPECT_TRUE(has(j.out, "\"env-buffer\"")) << j.out;

  // --socket wins over the environment.
  const run_result o =
      run({"xbuf", "stat", "--socket", socket()}, {{"XBUF_SOCKET", "/nonexistent/xbuf.sock"}});
  EXPECT_EQ(o.rc, 0) << show(o);

  const run_result d =
      run({"xbuf", "demo", "--seconds", "1", "--name", "env-demo"}, {{"XBUF_SOCKET", socket()}});
  EXPECT_EQ(d.rc, 0) << show(d);
  EXPECT_TRUE(has(d.out, "xbuf demo: ")) << d.out;
}

// The table a person reads: binary units, labels that say what they count.
TEST_F(CliDaemonTest, StatTableUsesBinaryUnitsAndFitsOneHundredColumns) {
  auto a = connect("units-subject");
  auto buf = a.alloc(3 << 20, {placement::pageable()}, "units-buffer");
  ASSERT_TRUE(buf) << buf.err().describe();
  const run_result r = run({"xbuf", "stat", "--socket", socket()});
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_TRUE(has(r.out, "3 MiB")) << r.out;
  EXPECT_FALSE(has(r.out, std::to_string(3 << 20))) << "a raw byte count:\n" << r.out;
  EXPECT_FALSE(has(r.out, "bytes_moved")) << r.out;
  EXPECT_FALSE(has(r.out, "pinned_bytes")) << r.out;
  EXPECT_TRUE(has(r.out, "refused allocations")) << r.out;
  EXPECT_TRUE(has(r.out, "held in place by pins and no-evict buffers: 0 B of 4 MiB")) << r.out;
  std::size_t start = 0;
  for (std::size_t nl; (nl = r.out.find('\n', start)) != std::string::npos; start = nl + 1) {
    const std::string line = r.out.substr(start, nl - start);
    if (line.rfind("xbufd on ", 0) == 0) continue;  // holds the socket path, as long as it is
    EXPECT_LE(line.size(), 100u) << line;
  }
}

TEST_F(CliDaemonTest, StatJsonIsValidWithTheSchemaAndTheTestsBuffers) {
  auto a = connect("json-subject");
  // A name that needs escaping, through the real CLI.
  const std::string name = "json \"quoted\" buffer";
  auto buf = a.alloc(128 << 10, {placement::vram(0), placement::pageable()}, name);
  ASSERT_TRUE(buf) << buf.err().describe();

  const run_result r = run({"xbuf", "stat", "--json", "--socket", socket()});
  ASSERT_EQ(r.rc, 0) << show(r);
  EXPECT_EQ(r.err, "");
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.back(), '\n');
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "one line";
  const json::value v = parsed(r.out);
  ASSERT_NE(v.as_object(), nullptr);
  EXPECT_EQ(v.as_object()->front().first, "schema");
  ASSERT_NE(v.find("schema"), nullptr);
  EXPECT_EQ(*v.find("schema")->as_string(), "xbuf.stat/1");
  EXPECT_EQ(*v.find("backend")->as_string(), "sim");

  const json::array* clients = v.find("clients")->as_array();
  ASSERT_NE(clients, nullptr);
  std::string owner;
  for (const auto& c : *clients) {
    if (*c.find("name")->as_string() == "json-subject") owner = c.find("owner")->as_number()->text;
  }
  ASSERT_EQ(owner, std::to_string(a.owner())) << r.out;

  const json::array* buffers = v.find("buffers")->as_array();
  ASSERT_NE(buffers, nullptr);
  const json::value* mine = nullptr;
  for (const auto& b : *buffers) {
    if (b.find("id")->as_number()->text == std::to_string(*buf)) mine = &b;
  }
  ASSERT_NE(mine, nullptr) << r.out;
  EXPECT_EQ(*mine->find("name")->as_string(), name);
  EXPECT_EQ(mine->find("owner")->as_number()->text, owner);
  EXPECT_EQ(mine->find("size")->as_number()->text, std::to_string(128 << 10));
  EXPECT_EQ(*mine->find("where")->find("name")->as_string(), "vram0");

  const json::value* counters = v.find("counters");
  ASSERT_NE(counters, nullptr);
  ASSERT_NE(counters->find("allocations"), nullptr);
  EXPECT_GE(counters->find("allocations")->as_number()->as_double, 1.0);
}

TEST(CliTest, TopoJsonHasTheSchemaAndTheSource) {
  const std::string xml = std::string(XBUF_TEST_DATA_DIR) + "/topologies/nvidiaDGX2.xml";
  const run_result r = run({"xbuf", "topo", "--json", "--xml", xml});
  ASSERT_EQ(r.rc, 0) << show(r);
  const json::value v = parsed(r.out);
  ASSERT_NE(v.as_object(), nullptr);
  EXPECT_EQ(v.as_object()->front().first, "schema");
  EXPECT_EQ(*v.find("schema")->as_string(), "xbuf.topo/1");
  EXPECT_EQ(*v.find("source")->as_string(), xml);
  ASSERT_NE(v.find("devices"), nullptr);
  ASSERT_NE(v.find("devices")->as_array(), nullptr);
  EXPECT_FALSE(v.find("devices")->as_array()->empty());
}

TEST(CliTest, TopoFileErrorsAreRuntimeErrors) {
  const run_result r = run({"xbuf", "topo", "--xml", "/nonexistent/machine.xml"});
  EXPECT_EQ(r.rc, 1) << show(r);
  EXPECT_TRUE(has(r.err, "/nonexistent/machine.xml")) << r.err;
}

class CliDemoTest : public CliDaemonTest {
 protected:
  std::vector<std::string> args() const override { return demo_daemon_args; }
};

// The demo holds at most 24 buffers (one more right after an allocation,
// before the oldest goes). A buffer freed while still attached would stay
// listed under its owner past that - the pile-up that used to fill the
// host domains and end run.sh in refusals.
TEST_F(CliDemoTest, DemoServesEveryAllocationAndDetachesBeforeItFrees) {
  auto watcher = connect("watcher");
  command demo({"xbuf", "demo", "--socket", socket(), "--seconds", "4", "--name", "cli-demo"});

  std::optional<std::uint32_t> demo_owner;
  std::size_t most_listed = 0;
  std::size_t samples = 0;
  const auto deadline = std::chrono::steady_clock::now() + 30s;
  bool gone = false;
  while (!gone && std::chrono::steady_clock::now() < deadline) {
    auto s = watcher.stats();
    ASSERT_TRUE(s) << s.err().describe();
    bool listed_client = false;
    for (const auto& c : s->clients) {
      if (c.name == "cli-demo") {
        demo_owner = c.owner;
        listed_client = true;
      }
    }
    if (demo_owner) {
      std::size_t listed = 0;
      for (const auto& b : s->buffers) listed += b.owner == *demo_owner ? 1 : 0;
      most_listed = std::max(most_listed, listed);
      ++samples;
      gone = !listed_client;
    }
    std::this_thread::sleep_for(100ms);
  }
  const run_result r = demo.finish();
  ASSERT_EQ(r.rc, 0) << show(r);
  ASSERT_TRUE(demo_owner) << "the demo never showed up in stats";
  EXPECT_GE(samples, 5u);
  EXPECT_LE(most_listed, 25u)
      << "buffers of the demo listed past what it holds: freed but still attached";

  // "xbuf demo: N allocations, 0 refused, A attached and A detached, E move_notify events"
  unsigned long long allocs = 0, refused = 1, attached = 0, detached = 0, events = 0;
  ASSERT_EQ(std::sscanf(
                r.out.c_str(),
                "xbuf demo: %llu allocations, %llu refused, %llu attached and %llu detached, %llu "
                "move_notify events",
                &allocs, &refused, &attached, &detached, &events),
            5)
      << r.out;
  EXPECT_GT(allocs, 0u);
  EXPECT_EQ(refused, 0u) << show(r);
  EXPECT_GT(attached, 0u);
  EXPECT_EQ(detached, attached);

  // Afterwards nothing of the demo's is left.
  auto s = watcher.stats();
  ASSERT_TRUE(s) << s.err().describe();
  for (const auto& b : s->buffers)
    EXPECT_NE(b.owner, *demo_owner) << "buffer " << b.id << " of the demo";
  for (const auto& c : s->clients) EXPECT_NE(c.name, "cli-demo");
  for (const auto& k : s->counters) {
    if (k.name == "allocation_failures") {
      EXPECT_EQ(k.value, 0u);
    }
  }
}

}  // namespace
}  // namespace xbuf
