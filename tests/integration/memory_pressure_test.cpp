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
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <span>
#include <thread>
#include <vector>

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
    daemon_ = std::make_unique<test::scratch_daemon>(std::vector<std::string>{"--sim-devices", "1"});
    ASSERT_TRUE(daemon_->up()) << "xbufd did not come up; log:\n" << daemon_->log();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "xbufd log:\n%s\n", daemon_->log().c_str());
  }
  std::unique_ptr<client::allocator> open(const char* name) {
    auto a = client::connect_daemon(daemon_->socket(), name);
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

  std::unique_ptr<test::scratch_daemon> daemon_;
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

// A tenant that never reads is not flooded: while one memory_pressure for
// a domain still waits in its queue, the daemon queues no second one. The
// idle client fills its socket first (2,000 stats replies it does not
// read), so everything after stays queued in the daemon; five pressure
// events later it reads and finds one.
TEST_F(MemoryPressureTest, AClientThatDoesNotReadHoldsOnePressureEventPerDomain) {
  const int idle = test::raw_connect(daemon_->socket());
  ASSERT_GE(idle, 0);
  std::vector<std::uint8_t> out = wire::encode_message(1, wire::hello_request{.client_name = "idle"});
  for (std::uint64_t id = 2; id < 2002; ++id) {
    const auto f = wire::encode_message(id, wire::stats_request{});
    out.insert(out.end(), f.begin(), f.end());
  }
  ASSERT_EQ(::write(idle, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  // Until the socket is full: what waits for the client to read has stopped
  // growing (2,000 replies are far more than a socket holds).
  int ready = -1;
  for (int still = 0, i = 0; still < 15 && i < 1000; ++i) {
    int now = 0;
    ASSERT_EQ(::ioctl(idle, FIONREAD, &now), 0);
    still = (now > 0 && now == ready) ? still + 1 : 0;
    ready = now;
    std::this_thread::sleep_for(20ms);
  }

  auto holder = open("holder");
  auto hungry = open("hungry-job");
  ASSERT_TRUE(holder && hungry);
  auto pinned = holder->alloc({.size = 768 * KiB, .placements = {placement::vram(0)}, .name = "held",
                               .cpu_access = false, .no_evict = true, .alignment = 0});
  ASSERT_TRUE(pinned) << pinned.err().describe();
  for (int i = 0; i < 5; ++i) {  // each is refused after the daemon's short retry (> the interval)
    auto big = hungry->alloc({.size = 512 * KiB, .placements = {placement::vram(0)}, .name = "big",
                              .cpu_access = false, .no_evict = false, .alignment = 0});
    ASSERT_FALSE(big);
    ASSERT_EQ(big.code(), errc::out_of_memory) << big.err().describe();
  }

  // Now read everything the daemon queued for the idle client.
  wire::frame_parser parser(false);
  int replies = 0;
  int pressure = 0;
  std::vector<std::uint8_t> buf(64 * KiB);
  // Every reply, then whatever followed them (an event queued after the
  // last reply), until the socket stays quiet.
  for (;;) {
    pollfd p{.fd = idle, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, replies < 2001 ? 10'000 : 500) != 1) break;
    const ssize_t n = ::read(idle, buf.data(), buf.size());
    if (n <= 0) break;
    parser.feed(std::span<const std::uint8_t>(buf.data(), static_cast<std::size_t>(n)));
    for (auto r = parser.next(); r.status == wire::parse_status::complete; r = parser.next()) {
      if (r.frame_.header.type == static_cast<std::uint16_t>(wire::msg_type::memory_pressure)) {
        ++pressure;
      } else {
        ++replies;
      }
    }
  }
  ::close(idle);
  EXPECT_EQ(replies, 2001) << "hello and every stats reply arrive";
  EXPECT_EQ(pressure, 1);
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
