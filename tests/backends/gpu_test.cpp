// SPDX-License-Identifier: MIT
//
// The pieces of the GPU skeleton (backends/gpu/), tested without any GPU:
// event fences over a fake runtime event, the poller, the deferred
// submitter, the fd-shareable host memory it takes from
// backends/detail/memfd_block, the sysfs NUMA lookups, the runtime error
// formatting and checked-call naming.
#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <unistd.h>

#include "backends/detail/memfd_block.hpp"
#include "backends/gpu/checked_call.hpp"
#include "backends/gpu/deferred_submitter.hpp"
#include "backends/gpu/event_fence.hpp"
#include "backends/gpu/event_poller.hpp"
#include "backends/gpu/numa_sysfs.hpp"
#include "backends/gpu/runtime_error.hpp"

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

TEST(NumaSysfsTest, NodeListsParseAsTheKernelWritesThem) {
  EXPECT_EQ(parse_node_list("0\n"), (std::vector<int>{0}));
  EXPECT_EQ(parse_node_list("0-1,3"), (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(parse_node_list("2,0-1"), (std::vector<int>{0, 1, 2}));
  for (const char* bad : {"", "x", "3-1", "-1", "0-", "+1", "0-99999", "1,,2"}) {
    EXPECT_TRUE(parse_node_list(bad).empty()) << bad;
  }
  // This machine's list: every node in it exists in sysfs.
  for (int n : online_numa_nodes()) EXPECT_TRUE(numa_node_exists(n)) << n;
  if (numa_node_exists(0)) {
    EXPECT_FALSE(online_numa_nodes().empty()) << "node0 exists, so the online list names it";
  }
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

// The GPU backend's host memory is detail::memfd_mapping, bound with
// bind_to_node and imported with detail::import_block (gpu_memory.cpp).
TEST(HostMappingTest, ExportedFdSeesTheSameBytes) {
  auto m = detail::memfd_mapping::create("xbuf-test", 10000);
  ASSERT_TRUE(m) << m.err().describe();
  EXPECT_EQ(m->size() % 4096, 0u);
  EXPECT_GE(m->size(), 10000u);
  std::memset(m->data(), 0x5a, 10000);
  auto other = detail::memfd_mapping::map_fd(::dup(m->fd()));
  ASSERT_TRUE(other) << other.err().describe();
  EXPECT_EQ(static_cast<unsigned char*>(other->data())[9999], 0x5a);
  static_cast<unsigned char*>(other->data())[0] = 0x11;
  EXPECT_EQ(static_cast<unsigned char*>(m->data())[0], 0x11);
  *other = detail::memfd_mapping{};
  *m = detail::memfd_mapping{};
  EXPECT_EQ(m->fd(), -1);
}

TEST(HostMappingTest, BadRequestsNameTheProblem) {
  auto zero = detail::memfd_mapping::create("xbuf-test", 0);
  EXPECT_EQ(zero.code(), errc::invalid_argument);
  EXPECT_FALSE(numa_node_exists(4000));
  auto node = detail::memfd_mapping::create("xbuf-test", 4096);
  ASSERT_TRUE(node) << node.err().describe();
  auto bound = node->bind_to_node(4000);
  ASSERT_EQ(bound.code(), errc::invalid_argument);
  EXPECT_NE(bound.err().message.find("NUMA node 4000"), std::string::npos);
  EXPECT_EQ(node->numa_node(), -1);
  auto small = detail::memfd_mapping::create("xbuf-test", 4096);
  ASSERT_TRUE(small);
  exported_memory too_big{::dup(small->fd()), 0, std::size_t{1} << 20, memory_kind::host_pinned};
  auto imported = detail::import_block(too_big, -1, "test");
  EXPECT_EQ(imported.code(), errc::invalid_argument);
}

TEST(HostMappingTest, BindsToAnExistingNumaNode) {
  ASSERT_TRUE(numa_node_exists(0)) << "every Linux machine has node 0";
  auto m = detail::memfd_mapping::create("xbuf-test", 1 << 20);
  ASSERT_TRUE(m) << m.err().describe();
  ASSERT_TRUE(m->bind_to_node(0));
  EXPECT_EQ(m->numa_node(), 0);
  std::memset(m->data(), 1, 1 << 20);
}

constexpr known_code test_codes[] = {{2, errc::out_of_memory, "ERR_TWO", "two went wrong"},
                                     {3, errc::busy, "ERR_THREE", "three, from the table"}};

TEST(RuntimeErrorTest, NamesTheCallThenTheRuntimesNameAndText) {
  runtime_error_parts p;
  p.code = errc::out_of_memory;
  p.value = 2;
  p.runtime_name = "rtTwo";
  p.runtime_text = "the runtime's words";
  const auto e = make_runtime_error(test_codes, p, "rtAlloc(device 0)");
  EXPECT_EQ(e.code, errc::out_of_memory);
  EXPECT_EQ(e.message, "rtAlloc(device 0): rtTwo (the runtime's words)");
}

TEST(RuntimeErrorTest, FallsBackToTheTableThenToTheFallbacks) {
  runtime_error_parts known;
  known.value = 2;
  EXPECT_EQ(make_runtime_error(test_codes, known, "f").message, "f: ERR_TWO (two went wrong)");
  runtime_error_parts unknown;
  unknown.code = errc::ok;  // an "error" that succeeded: misuse, reported as io_error
  unknown.value = 9;
  unknown.fallback_name = "ERR_9";
  unknown.unknown_text = "unrecognized";
  const auto e = make_runtime_error(test_codes, unknown, "g");
  EXPECT_EQ(e.code, errc::io_error);
  EXPECT_EQ(e.message, "g: ERR_9 (unrecognized)");
}

TEST(RuntimeErrorTest, TextEqualToTheNameCountsAsNone) {
  runtime_error_parts p;
  p.value = 3;
  p.runtime_name = "ERR_THREE";
  p.runtime_text = "ERR_THREE";
  p.unknown_text = "no description";
  EXPECT_EQ(make_runtime_error(test_codes, p, "h").message, "h: ERR_THREE (three, from the table)");
}

TEST(RuntimeErrorTest, FencesCarryEnodevForLostDevicesAndEioOtherwise) {
  EXPECT_EQ(fence_errno(errc::ok), 0);
  EXPECT_EQ(fence_errno(errc::device_lost), -ENODEV);
  EXPECT_EQ(fence_errno(errc::no_device), -ENODEV);
  EXPECT_EQ(fence_errno(errc::out_of_memory), -EIO);
}

TEST(CheckedCallTest, VersionedSymbolsAreNamedAsDocumented) {
  EXPECT_EQ(documented_name("cuMemAlloc_v2"), "cuMemAlloc");
  EXPECT_EQ(documented_name("cuDevicePrimaryCtxRelease_v2"), "cuDevicePrimaryCtxRelease");
  EXPECT_EQ(documented_name("hipMalloc"), "hipMalloc");
  EXPECT_EQ(documented_name("x_v"), "x_v");
}

}  // namespace
}  // namespace xbuf::gpu
