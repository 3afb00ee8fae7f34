// SPDX-License-Identifier: MIT
//
// The memory_pressure event against the real xbufd: a job's client
// library caches an idle chunk of VRAM (client/chunk_pool; chunks are
// no_evict, so eviction cannot take it); another job's allocation finds
// no room, the daemon tells every client, the first job's pool gives its
// idle chunk back and the allocation - retried by the daemon meanwhile -
// succeeds. Without a pool that listens, the allocation fails with
// out_of_memory after the daemon's short retry.
//
// Waits are bounded; nothing asserts how long anything took.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>

#include "client/allocator.hpp"
#include "client/chunk_pool.hpp"
#include "server/client_registry.hpp"
#include "server/pressure_notice.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t KiB = 1024;

class MemoryPressureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char d[] = "/tmp/xbuf-pressure-XXXXXX";
    ASSERT_NE(::mkdtemp(d), nullptr);
    dir_ = d;
    socket_ = dir_ + "/xbuf.sock";
    log_ = dir_ + "/xbufd.log";
    test::daemon_spec spec{.args = {"--sim-devices", "1"}, .socket = socket_, .nofile = {}, .uid = {}, .env = {}};
    daemon_ = std::make_unique<test::daemon_process>(std::move(spec), log_);
    ASSERT_TRUE(daemon_->wait_up(socket_)) << "xbufd did not come up; log:\n" << test::read_file(log_);
  }
  void TearDown() override {
    if (daemon_) daemon_->stop();
    if (HasFailure()) std::fprintf(stderr, "xbufd log:\n%s\n", test::read_file(log_).c_str());
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  std::unique_ptr<client::allocator> open(const char* name) {
    auto a = client::connect_daemon(socket_, name);
    EXPECT_TRUE(a) << a.err().describe();
    return a ? std::move(*a) : nullptr;
  }
  // A pool whose one chunk is most of GPU 0's 1 MiB and never trimmed by age.
  static client::chunk_pool_options pool_options(bool watch) {
    client::chunk_pool_options o;
    o.placements = {placement::vram(0)};
    o.device = 0;
    o.chunk_size = 768 * KiB;
    o.max_block = 256 * KiB;
    o.keep_idle = 4;
    o.idle_time = std::chrono::hours(1);
    o.watch_pressure = watch;
    o.poll_interval = 5ms;
    return o;
  }

  std::string dir_, socket_, log_;
  std::unique_ptr<test::daemon_process> daemon_;
};

TEST_F(MemoryPressureTest, AnotherJobsIdleChunkComesBackForAnAllocation) {
  auto cache_job = open("cache-job");
  auto hungry_job = open("hungry-job");
  ASSERT_TRUE(cache_job && hungry_job);
  client::chunk_pool pool(*cache_job, pool_options(true));
  auto p = pool.allocate(4 * KiB);
  ASSERT_TRUE(p) << p.err().describe();
  ASSERT_TRUE(pool.deallocate(*p));
  ASSERT_EQ(pool.stats().idle_chunks, 1u);

  // The cache job keeps calling its pool (a framework trims once a step),
  // which is when the pool reads the daemon's events.
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    for (int i = 0; i < 4000 && !stop; ++i) {
      (void)pool.trim();
      std::this_thread::sleep_for(1ms);
    }
  });
  auto big = hungry_job->alloc({.size = 512 * KiB, .placements = {placement::vram(0)}, .name = "big",
                                .cpu_access = false, .no_evict = false, .alignment = 0});
  stop = true;
  worker.join();
  ASSERT_TRUE(big) << big.err().describe();
  EXPECT_EQ(pool.stats().pressure_releases, 1u);
  EXPECT_EQ(pool.stats().chunks, 0u);
}

TEST_F(MemoryPressureTest, WithoutAListeningPoolTheAllocationFailsOutOfMemory) {
  auto cache_job = open("cache-job");
  auto hungry_job = open("hungry-job");
  ASSERT_TRUE(cache_job && hungry_job);
  client::chunk_pool pool(*cache_job, pool_options(false));
  auto p = pool.allocate(4 * KiB);
  ASSERT_TRUE(p) << p.err().describe();
  ASSERT_TRUE(pool.deallocate(*p));
  auto big = hungry_job->alloc({.size = 512 * KiB, .placements = {placement::vram(0)}, .name = "big",
                                .cpu_access = false, .no_evict = false, .alignment = 0});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.code(), errc::out_of_memory) << big.err().describe();
  EXPECT_EQ(pool.stats().idle_chunks, 1u);
  EXPECT_EQ(pool.stats().pressure_releases, 0u);
}

// The event is rate-limited per domain, daemon-wide: a client looping on
// impossible allocations cannot flood the others' queues.
TEST(PressureNoticeTest, OnePerDomainPerInterval) {
  server::client_registry clients;
  std::atomic<int> frames_a{0};
  std::atomic<int> frames_b{0};
  clients.add({.owner = 1, .pid = 0, .uid = 0, .gid = 0, .name = "a"}, {});
  clients.add({.owner = 2, .pid = 0, .uid = 0, .gid = 0, .name = "b"}, {});
  clients.set_events(1, [&](std::vector<std::uint8_t>) { frames_a.fetch_add(1); });
  clients.set_events(2, [&](std::vector<std::uint8_t> f) {
    wire::frame_parser parser(false);
    parser.feed(f);
    auto r = parser.next();
    ASSERT_EQ(r.status, wire::parse_status::complete);
    auto e = wire::decode_message<wire::memory_pressure_event>(r.frame_);
    ASSERT_TRUE(e) << e.err().describe();
    EXPECT_EQ(e->bytes, 4096u);
    frames_b.fetch_add(1);
  });
  server::pressure_notice notice(clients, std::chrono::hours(1));
  EXPECT_TRUE(notice.report(placement::vram(0), 4096));
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(notice.report(placement::vram(0), 4096));
  EXPECT_TRUE(notice.report(placement::vram(1), 4096));
  EXPECT_EQ(frames_a.load(), 2);
  EXPECT_EQ(frames_b.load(), 2);
  EXPECT_EQ(notice.sent(), 2u);
  EXPECT_EQ(notice.suppressed(), 1000u);
}

}  // namespace
}  // namespace xbuf
