// SPDX-License-Identifier: MIT
//
// The pieces the CUDA and HIP backends share, tested without any GPU: event
// fences over a fake runtime event, the poller, the deferred submitter, the
// fd-shareable host memory and the sysfs NUMA lookup.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "backends/gpu_common/deferred_submitter.hpp"
#include "backends/gpu_common/event_fence.hpp"
#include "backends/gpu_common/event_poller.hpp"
#include "backends/gpu_common/host_mapping.hpp"
#include "backends/gpu_common/pci_numa.hpp"

namespace xbuf::gpu {
namespace {

using namespace std::chrono_literals;

// A runtime event whose completion the test controls.
struct fake_state {
  std::atomic<bool> done{false};
  std::atomic<int> error{0};
  std::atomic<int> queries{0};
  std::atomic<bool> destroyed{false};
};

class fake_event final : public gpu_event {
 public:
  explicit fake_event(std::shared_ptr<fake_state> s) : s_(std::move(s)) {}
  ~fake_event() override { s_->destroyed = true; }
  std::optional<int> query() const noexcept override {
    s_->queries.fetch_add(1);
    if (!s_->done.load()) return std::nullopt;
    return s_->error.load();
  }

 private:
  std::shared_ptr<fake_state> s_;
};

TEST(PciAddressTest, NumaNodeOfAbsentDeviceIsUnknown) {
  EXPECT_EQ(numa_node_of_pci_device("ffff:ff:1f.7"), -1);
}

TEST(EventFenceTest, UnattachedFencePollsAsRunning) {
  auto f = event_fence::create(fence::allocate_context(), 1, "test-event", {});
  EXPECT_FALSE(f->is_signaled());
  EXPECT_EQ(f->driver_name(), "test-event");
  EXPECT_EQ(f->wait(1ms).code(), errc::timed_out);
}

TEST(EventFenceTest, CompletedEventSignalsWithItsError) {
  auto s = std::make_shared<fake_state>();
  auto f = event_fence::create(fence::allocate_context(), 1, "test-event", {});
  f->attach(std::make_unique<fake_event>(s));
  EXPECT_TRUE(f->has_event());
  EXPECT_FALSE(f->is_signaled());
  s->error = -EIO;
  s->done = true;
  EXPECT_TRUE(f->is_signaled());
  EXPECT_EQ(f->error(), -EIO);
  EXPECT_FALSE(s->destroyed);
  f.reset();
  EXPECT_TRUE(s->destroyed);  // the fence owns its event
}

TEST(EventPollerTest, WaitIsWokenByThePollerWhenTheEventCompletes) {
  auto poller = std::make_shared<event_poller>("test-poller");
  auto s = std::make_shared<fake_state>();
  auto f = event_fence::create(fence::allocate_context(), 1, "test-event", poller);
  f->attach(std::make_unique<fake_event>(s));

  std::atomic<bool> callback_ran{false};
  std::thread::id callback_thread;
  ASSERT_TRUE(f->add_callback([&](const fence&) {
    callback_thread = std::this_thread::get_id();
    callback_ran = true;
  }));
  EXPECT_EQ(poller->watched(), 1u);
  std::thread completer([s] {
    std::this_thread::sleep_for(20ms);
    s->done = true;
  });
  EXPECT_TRUE(f->wait(10s));
  completer.join();
  EXPECT_TRUE(f->is_signaled());
  EXPECT_EQ(f->error(), 0);
  EXPECT_TRUE(callback_ran);
  EXPECT_NE(callback_thread, std::this_thread::get_id());
  EXPECT_GT(s->queries.load(), 1);
}

TEST(EventPollerTest, FencesOutliveThePollerAndStillCompleteByPolling) {
  auto s = std::make_shared<fake_state>();
  std::shared_ptr<event_fence> f;
  {
    auto poller = std::make_shared<event_poller>("test-poller");
    f = event_fence::create(fence::allocate_context(), 1, "test-event", poller);
    f->attach(std::make_unique<fake_event>(s));
  }
  s->done = true;
  EXPECT_TRUE(f->wait(1s));  // no poller: the wait's own poll sees completion
  EXPECT_TRUE(f->is_signaled());
}

TEST(DeferredSubmitterTest, StartsOnlyAfterEveryFenceSignaled) {
  deferred_submitter sub("test-submit");
  auto a = fence::create(fence::allocate_context(), 1);
  auto b = fence::create(fence::allocate_context(), 1);
  std::atomic<int> calls{0};
  std::atomic<int> seen{1};
  std::thread::id start_thread;
  const fence_ptr deps[] = {a, b};
  sub.submit_after(deps, [&](int e) {
    start_thread = std::this_thread::get_id();
    seen = e;
    calls.fetch_add(1);
  });
  EXPECT_EQ(sub.pending(), 1u);
  ASSERT_TRUE(a->signal());
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(calls.load(), 0);
  ASSERT_TRUE(b->signal());
  for (int i = 0; i < 1000 && calls.load() == 0; ++i) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(seen.load(), 0);
  EXPECT_NE(start_thread, std::this_thread::get_id());
  EXPECT_EQ(sub.pending(), 0u);
}

TEST(DeferredSubmitterTest, PassesTheFirstUpstreamError) {
  deferred_submitter sub("test-submit");
  auto a = fence::create(fence::allocate_context(), 1);
  auto b = fence::signaled(-EIO);
  std::atomic<int> seen{1};
  std::atomic<bool> called{false};
  const fence_ptr deps[] = {a, b};
  sub.submit_after(deps, [&](int e) {
    seen = e;
    called = true;
  });
  ASSERT_TRUE(a->signal());
  for (int i = 0; i < 1000 && !called; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_TRUE(called);
  EXPECT_EQ(seen.load(), -EIO);
}

TEST(DeferredSubmitterTest, CancelsWaitingJobsOnDestruction) {
  auto never = fence::create(fence::allocate_context(), 1);
  std::atomic<int> seen{1};
  std::atomic<int> calls{0};
  {
    deferred_submitter sub("test-submit");
    const fence_ptr deps[] = {never};
    sub.submit_after(deps, [&](int e) {
      seen = e;
      calls.fetch_add(1);
    });
  }
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(seen.load(), -ECANCELED);
  ASSERT_TRUE(never->signal());  // the callback finds the submitter gone
  EXPECT_EQ(calls.load(), 1);
}

TEST(HostMappingTest, ExportedFdSeesTheSameBytes) {
  auto m = create_host_mapping(10000, -1, "xbuf-test");
  ASSERT_TRUE(m) << m.err().describe();
  EXPECT_EQ(m->size % 4096, 0u);
  EXPECT_GE(m->size, 10000u);
  std::memset(m->ptr, 0x5a, 10000);
  auto other = map_host_fd(::dup(m->fd), 10000);
  ASSERT_TRUE(other) << other.err().describe();
  EXPECT_EQ(static_cast<unsigned char*>(other->ptr)[9999], 0x5a);
  static_cast<unsigned char*>(other->ptr)[0] = 0x11;
  EXPECT_EQ(static_cast<unsigned char*>(m->ptr)[0], 0x11);
  release(*other);
  release(*m);
  EXPECT_EQ(m->fd, -1);
}

TEST(HostMappingTest, BadRequestsNameTheProblem) {
  auto zero = create_host_mapping(0, -1, "xbuf-test");
  EXPECT_EQ(zero.code(), errc::invalid_argument);
  auto node = create_host_mapping(4096, 4000, "xbuf-test");
  ASSERT_EQ(node.code(), errc::invalid_argument);
  EXPECT_NE(node.err().message.find("NUMA node 4000"), std::string::npos);
  auto small = create_host_mapping(4096, -1, "xbuf-test");
  ASSERT_TRUE(small);
  auto too_big = map_host_fd(small->fd, 1 << 20);
  EXPECT_EQ(too_big.code(), errc::invalid_argument);
  release(*small);
}

TEST(HostMappingTest, BindsToAnExistingNumaNode) {
  ASSERT_TRUE(numa_node_exists(0)) << "every Linux machine has node 0";
  auto m = create_host_mapping(1 << 20, 0, "xbuf-test");
  ASSERT_TRUE(m) << m.err().describe();
  EXPECT_EQ(m->numa_node, 0);
  std::memset(m->ptr, 1, 1 << 20);
  release(*m);
}

}  // namespace
}  // namespace xbuf::gpu
