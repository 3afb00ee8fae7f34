// SPDX-License-Identifier: MIT
//
// `xbuf trace` against the real xbufd: a client fills vram0 so that one of
// its buffers is evicted, frees one, and `xbuf trace` writes the timeline -
// as Chrome trace JSON (checked event by event) and as an HTML page that a
// real browser (Debian's chromium, headless) renders: every domain's plot,
// the client's band, the eviction's mark. The screenshot is kept as an
// artifact (XBUF_ARTIFACT_DIR, else the build's Testing/ directory).
// The browser part skips where chromium is missing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "client/remote_client.hpp"
#include "tests/common/bin_dir.hpp"
#include "tests/common/json.hpp"
#include "tests/common/shell.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

namespace json = test::json;
constexpr std::uint64_t KiB = 1024;

std::string shell(const std::string& cmd, int* rc = nullptr) {
  auto r = test::run_shell(cmd);
  if (rc != nullptr) *rc = r.rc;
  return r.out;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t i = 0; (i = text.find(what, i)) != std::string::npos; i += what.size()) ++n;
  return n;
}

class TraceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(daemon_.up()) << daemon_.log();
    dir_ = std::filesystem::path(daemon_.socket()).parent_path().string();
    auto c = client::remote_client::connect(daemon_.socket(), "trainer");
    ASSERT_TRUE(c) << c.err().describe();
    // vram0 holds 1 MiB: the third 512 KiB buffer evicts one of the first two.
    buffer_id ids[3] = {};
    for (auto& id : ids) {
      auto b = c->alloc(512 * KiB, {placement::vram(0), placement::pinned()});
      ASSERT_TRUE(b) << b.err().describe();
      id = *b;
    }
    ASSERT_TRUE(c->free(ids[2]));
    client_.emplace(std::move(*c));  // stays connected: its name labels the events
  }

  test::scratch_daemon daemon_{{}};
  std::optional<client::remote_client> client_;
  std::string dir_;
};

TEST_F(TraceTest, TheJsonHasEveryAllocationTheEvictionAndTheOccupancy) {
  const std::string out = dir_ + "/trace.json";
  int rc = -1;
  const std::string said =
      shell(test::bin_dir() + "/xbuf trace --socket " + daemon_.socket() + " --out " + out + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << said;
  std::size_t where = 0;
  const auto doc = json::parse(slurp(out), &where);
  ASSERT_TRUE(doc) << "invalid JSON at " << where;
  const auto* other = doc->find("otherData");
  ASSERT_NE(other, nullptr);
  ASSERT_NE(other->find("schema"), nullptr);
  EXPECT_EQ(*other->find("schema")->as_string(), "xbuf.trace/1");
  const auto* events = doc->find("traceEvents")->as_array();
  ASSERT_NE(events, nullptr);
  int allocs = 0, evictions = 0, frees = 0, vram0_counters = 0;
  for (const auto& e : *events) {
    const std::string ph = e.find("ph") ? *e.find("ph")->as_string() : "";
    const std::string name = e.find("name") ? *e.find("name")->as_string() : "";
    if (ph == "i") {
      const auto* client = e.find("args")->find("client");
      ASSERT_NE(client, nullptr);
      EXPECT_EQ(client->as_string()->rfind("trainer (", 0), 0u) << *client->as_string();
      allocs += name == "alloc";
      frees += name == "free";
      evictions += name.rfind("evict vram0 -> ", 0) == 0;
    }
    vram0_counters += ph == "C" && name == "vram0";
  }
  EXPECT_EQ(allocs, 3);
  EXPECT_EQ(evictions, 1) << "the third buffer must have evicted one";
  EXPECT_EQ(frees, 1);
  EXPECT_GE(vram0_counters, 3);
}

TEST_F(TraceTest, TheHtmlPageRendersEveryDomainInARealBrowser) {
  const std::string chromium = shell("command -v chromium");
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (scripts/install-deps.sh installs it)";
  const std::string html = dir_ + "/trace.html";
  int rc = -1;
  const std::string said =
      shell(test::bin_dir() + "/xbuf trace --socket " + daemon_.socket() + " --html " + html + " 2>&1", &rc);
  ASSERT_EQ(rc, 0) << said;
  const std::string flags = "chromium --headless --no-sandbox --disable-gpu --no-first-run --user-data-dir=" +
                            dir_ + "/profile ";
  // The DOM after the page's script ran: what it drew, not just the file.
  const std::string dom = shell("timeout 120 " + flags + "--dump-dom file://" + html + " 2>/dev/null");
  ASSERT_NE(dom.find("data-rendered=\"4 domains\""), std::string::npos) << "the script did not finish:\n"
                                                                       << dom.substr(0, 2000);
  for (const char* d : {"vram0", "vram1", "pinned", "pageable"}) {
    EXPECT_EQ(count(dom, std::string("data-domain=\"") + d + "\""), 1u) << d;
  }
  EXPECT_GE(count(dom, "data-client=\"trainer ("), 2u) << "the client's band in vram0 and pinned";
  EXPECT_GE(count(dom, "class=\"move\""), 2u) << "the eviction, marked where it left and where it went";
  EXPECT_NE(dom.find("<path d=\"M"), std::string::npos);
  // The screenshot, for a person to look at.
  const char* env = std::getenv("XBUF_ARTIFACT_DIR");
  const std::string artifacts = env != nullptr && *env != '\0' ? env : std::string(XBUF_ARTIFACT_DIR);
  std::filesystem::create_directories(artifacts);
  const std::string png = artifacts + "/trace.png";
  std::filesystem::remove(png);
  (void)shell("timeout 120 " + flags + "--window-size=1000,900 --screenshot=" + png + " file://" + html +
              " >/dev/null 2>&1");
  const std::string shot = slurp(png);
  ASSERT_GT(shot.size(), 1000u) << "no screenshot at " << png;
  EXPECT_EQ(shot.substr(1, 3), "PNG");
}

TEST_F(TraceTest, UsageErrorsExitTwo) {
  int rc = -1;
  const std::string said = shell(test::bin_dir() + "/xbuf trace --socket " + daemon_.socket() + " 2>&1", &rc);
  EXPECT_EQ(rc, 2) << said;
  EXPECT_NE(said.find("give --out FILE.json and/or --html FILE.html"), std::string::npos) << said;
  (void)shell(test::bin_dir() + "/xbuf trace --out 2>&1", &rc);
  EXPECT_EQ(rc, 2);
  const std::string bad = shell(test::bin_dir() + "/xbuf trace --socket " + daemon_.socket() +
                                " --out /nonexistent-dir/t.json 2>&1", &rc);
  EXPECT_EQ(rc, 1) << bad;
  EXPECT_NE(bad.find("cannot write /nonexistent-dir/t.json"), std::string::npos) << bad;
}

}  // namespace
}  // namespace xbuf
