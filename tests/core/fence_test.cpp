// SPDX-License-Identifier: MIT
// Behaviour of fences, timelines and waits (core/fence.hpp, core/timeline.hpp).
#include "core/fence.hpp"
#include "core/timeline.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace xbuf {
namespace {

using namespace std::chrono_literals;

fence_ptr make_fence() { return fence::create(fence::allocate_context(), 1); }

// A backend-style fence kind: completion is learnt by polling "hardware".
class polled_fence final : public fence {
 public:
  static std::shared_ptr<polled_fence> make() {
    return std::shared_ptr<polled_fence>(new polled_fence());
  }
  std::string_view driver_name() const noexcept override { return "test-polled"; }

  std::atomic<bool> hw_done{false};
  std::atomic<int> hw_error{0};
  std::atomic<int> enable_calls{0};

 private:
  polled_fence() : fence(fence::allocate_context(), 1) {}
  void do_enable_signaling() noexcept override { enable_calls.fetch_add(1); }
  std::optional<int> do_poll() const noexcept override {
    if (hw_done.load()) return hw_error.load();
    return std::nullopt;
  }
};

TEST(FenceTest, NewFenceIsUnsignaledWithNoError) {
  auto f = make_fence();
  EXPECT_FALSE(f->is_signaled());
  EXPECT_EQ(f->error(), 0);
  EXPECT_FALSE(f->timestamp().has_value());
}

TEST(FenceTest, FirstSignalWinsAndLaterSignalsReportAlreadySignaled) {
  auto f = make_fence();
  EXPECT_TRUE(f->signal(-EIO));
  auto again = f->signal(0);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.code(), errc::already_signaled);
  EXPECT_TRUE(f->is_signaled());
  EXPECT_EQ(f->error(), -EIO) << "a later signal must not overwrite the first error";
  EXPECT_TRUE(f->timestamp().has_value());
}

TEST(FenceTest, ErrorIsReadableAfterSignal) {
  auto f = make_fence();
  ASSERT_TRUE(f->signal(-ETIMEDOUT));
  EXPECT_EQ(f->error(), -ETIMEDOUT);
}

TEST(FenceTest, AddCallbackAfterSignalReportsAlreadySignaledNotTheFenceError) {
  auto f = make_fence();
  ASSERT_TRUE(f->signal(-EIO));
  bool called = false;
  auto id = f->add_callback([&](const fence&) { called = true; });
  ASSERT_FALSE(id);
  EXPECT_EQ(id.code(), errc::already_signaled);
  EXPECT_FALSE(called) << "a late callback is neither called nor kept";
}

TEST(FenceTest, CallbacksRunOnceInOrderOnSignal) {
  auto f = make_fence();
  std::vector<int> order;
  ASSERT_TRUE(f->add_callback([&](const fence& s) {
    EXPECT_TRUE(s.is_signaled()) << "callbacks see the fence already signaled";
    order.push_back(1);
  }));
  ASSERT_TRUE(f->add_callback([&](const fence&) { order.push_back(2); }));
  ASSERT_TRUE(f->signal());
  (void)f->signal();
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
}

TEST(FenceTest, CallbackSeesTheStoredError) {
  auto f = make_fence();
  int seen = 0;
  ASSERT_TRUE(f->add_callback([&](const fence& s) { seen = s.error(); }));
  ASSERT_TRUE(f->signal(-EIO));
  EXPECT_EQ(seen, -EIO);
}

TEST(FenceTest, RemovedCallbackIsNotCalled) {
  auto f = make_fence();
  bool called = false;
  auto id = f->add_callback([&](const fence&) { called = true; });
  ASSERT_TRUE(id);
  EXPECT_TRUE(f->remove_callback(*id));
  ASSERT_TRUE(f->signal());
  EXPECT_FALSE(called);
}

TEST(FenceTest, LateRemoveOfARunCallbackReturnsFalse) {
  auto f = make_fence();
  int calls = 0;
  auto id = f->add_callback([&](const fence&) { ++calls; });
  ASSERT_TRUE(id);
  ASSERT_TRUE(f->signal());
  EXPECT_FALSE(f->remove_callback(*id));
  EXPECT_FALSE(f->remove_callback(12345)) << "unknown ids are not removed";
  EXPECT_EQ(calls, 1);
}

TEST(FenceTest, RemoveCallbackWaitsForACallbackRunningOnAnotherThread) {
  auto f = make_fence();
  std::promise<void> entered;
  std::promise<void> release;
  auto release_future = release.get_future().share();
  std::atomic<bool> finished{false};
  auto id = f->add_callback([&](const fence&) {
    entered.set_value();
    release_future.wait();
    finished = true;
  });
  ASSERT_TRUE(id);
  std::thread signaler([&] { (void)f->signal(); });
  entered.get_future().wait();

  auto remover = std::async(std::launch::async, [&] { return f->remove_callback(*id); });
  EXPECT_EQ(remover.wait_for(50ms), std::future_status::timeout)
      << "remove_callback must not return while the callback still runs";
  release.set_value();
  EXPECT_FALSE(remover.get());
  EXPECT_TRUE(finished.load());
  signaler.join();
}

TEST(FenceTest, RemoveCallbackFromInsideItselfDoesNotDeadlock) {
  auto f = make_fence();
  fence::callback_id self = 0;
  bool removed = true;
  auto id = f->add_callback([&](const fence&) { removed = f->remove_callback(self); });
  ASSERT_TRUE(id);
  self = *id;
  ASSERT_TRUE(f->signal());
  EXPECT_FALSE(removed);
}

TEST(FenceTest, CallbackMaySignalAnotherFence) {
  auto a = make_fence();
  auto b = make_fence();
  ASSERT_TRUE(a->add_callback([&](const fence& s) { (void)b->signal(s.error()); }));
  ASSERT_TRUE(a->signal(-EIO));
  EXPECT_TRUE(b->is_signaled());
  EXPECT_EQ(b->error(), -EIO);
}

TEST(FenceTest, WaitReturnsWhenSignaledFromAnotherThread) {
  auto f = make_fence();
  std::thread t([&] {
    std::this_thread::sleep_for(10ms);
    (void)f->signal();
  });
  EXPECT_TRUE(f->wait(10s));
  EXPECT_TRUE(f->is_signaled());
  t.join();
}

// A sleeping waiter is woken after the fence's callbacks, as the kernel's
// default wait is its last callback: what a callback records (a move marking
// its buffer lost) is there when the wait returns.
TEST(FenceTest, ASleepingWaitReturnsAfterTheCallbacksAddedBeforeIt) {
  for (int i = 0; i < 20; ++i) {
    auto f = make_fence();
    std::atomic<bool> ran{false};
    ASSERT_TRUE(f->add_callback([&](const fence&) {
      std::this_thread::sleep_for(2ms);  // long enough for a woken waiter to overtake it
      ran = true;
    }));
    std::thread t([&] {
      std::this_thread::sleep_for(1ms);
      (void)f->signal();
    });
    EXPECT_TRUE(f->wait(10s));
    EXPECT_TRUE(ran.load()) << "round " << i;
    t.join();
  }
}

// Many threads asleep on one fence all wake on one signal (the futex wake
// is for all of them, and none may miss it between its check and its sleep).
TEST(FenceTest, EveryWaiterWakesOnOneSignal) {
  for (int round = 0; round < 50; ++round) {
    auto f = make_fence();
    std::atomic<int> woken{0};
    std::vector<std::thread> waiters;
    for (int i = 0; i < 4; ++i) {
      waiters.emplace_back([&] {
        if (f->wait(10s)) woken.fetch_add(1);
      });
    }
    (void)f->signal();
    for (auto& w : waiters) w.join();
    EXPECT_EQ(woken.load(), 4) << "round " << round;
  }
}

TEST(FenceTest, WaitOnAFenceSignaledWithErrorReturnsOk) {
  auto f = make_fence();
  ASSERT_TRUE(f->signal(-EIO));
  auto s = f->wait(0s);
  EXPECT_TRUE(s) << "the call succeeded; the operation's error is read with error()";
  EXPECT_EQ(f->error(), -EIO);
}

TEST(FenceTest, ZeroTimeoutTestsWithoutBlocking) {
  auto f = make_fence();
  auto s = f->wait(0s);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::timed_out);
}

TEST(FenceTest, WaitTimesOutOnAnUnsignaledFence) {
  auto f = make_fence();
  auto s = f->wait(20ms);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::timed_out);
  EXPECT_FALSE(f->is_signaled());
}

TEST(FenceTest, CancelledWaitReportsCancelledNotTimeout) {
  auto f = make_fence();
  cancel_token cancel;
  std::thread t([&] {
    std::this_thread::sleep_for(10ms);
    cancel.cancel();
  });
  auto s = f->wait(wait_forever, &cancel);
  t.join();
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::cancelled);
  EXPECT_FALSE(f->is_signaled());
}

TEST(FenceTest, WaitWithAnAlreadyCancelledTokenReturnsAtOnce) {
  auto f = make_fence();
  cancel_token cancel;
  cancel.cancel();
  auto s = f->wait(wait_forever, &cancel);
  EXPECT_EQ(s.code(), errc::cancelled);
}

TEST(FenceTest, SignaledFenceWinsOverCancelledToken) {
  auto f = make_fence();
  ASSERT_TRUE(f->signal());
  cancel_token cancel;
  cancel.cancel();
  EXPECT_TRUE(f->wait(wait_forever, &cancel));
}

TEST(FenceTest, BackendFenceIsSignaledByPollingAndEnablesSignalingOnce) {
  auto f = polled_fence::make();
  EXPECT_FALSE(f->is_signaled());
  EXPECT_EQ(f->wait(0s).code(), errc::timed_out);
  EXPECT_EQ(f->wait(0s).code(), errc::timed_out);
  f->hw_error = -EIO;
  f->hw_done = true;
  EXPECT_TRUE(f->is_signaled());
  EXPECT_EQ(f->error(), -EIO);
  EXPECT_LE(f->enable_calls.load(), 1);
  EXPECT_EQ(f->driver_name(), "test-polled");
}

TEST(FenceTest, EnableSignalingIsCalledWhenACallbackIsAdded) {
  auto f = polled_fence::make();
  EXPECT_EQ(f->enable_calls.load(), 0) << "no work to do until somebody cares";
  ASSERT_TRUE(f->add_callback([](const fence&) {}));
  ASSERT_TRUE(f->add_callback([](const fence&) {}));
  EXPECT_EQ(f->enable_calls.load(), 1);
  (void)f->signal();
}

TEST(FenceTest, DroppingAnUnsignaledFenceRunsCallbacksWithEcanceled) {
  int seen = 0;
  {
    auto f = make_fence();
    ASSERT_TRUE(f->add_callback([&](const fence& s) { seen = s.error(); }));
  }
  EXPECT_EQ(seen, -ECANCELED);
}

TEST(FenceTest, StubFenceIsSignaled) {
  EXPECT_TRUE(fence::signaled()->is_signaled());
  EXPECT_EQ(fence::signaled(-EIO)->error(), -EIO);
}

TEST(FenceTest, DescribeNamesKindIdsAndState) {
  auto f = fence::create(7, 9);
  EXPECT_NE(f->describe().find("7:9"), std::string::npos);
  EXPECT_NE(f->describe().find("unsignaled"), std::string::npos);
  (void)f->signal(-EIO);
  EXPECT_NE(f->describe().find("error=-5"), std::string::npos);
}

TEST(TimelineTest, SeqnosIncreaseAndContextsAreUnique) {
  auto a = timeline::create("a");
  auto b = timeline::create("b");
  EXPECT_NE(a->context(), b->context());
  auto f1 = a->next_fence();
  auto f2 = a->next_fence();
  EXPECT_EQ(f1->context(), a->context());
  EXPECT_LT(f1->seqno(), f2->seqno());
  EXPECT_EQ(a->last_seqno(), f2->seqno());
}

TEST(TimelineTest, SignalingALaterFenceSignalsEarlierOnesFirst) {
  auto t = timeline::create("copy");
  auto f1 = t->next_fence();
  auto f2 = t->next_fence();
  auto f3 = t->next_fence();
  auto f4 = t->next_fence();
  std::vector<std::uint64_t> order;
  for (auto& f : {f1, f2, f3}) {
    ASSERT_TRUE(f->add_callback([&](const fence& s) { order.push_back(s.seqno()); }));
  }
  ASSERT_TRUE(f3->signal(-EIO));
  EXPECT_TRUE(f1->is_signaled());
  EXPECT_TRUE(f2->is_signaled());
  EXPECT_FALSE(f4->is_signaled());
  EXPECT_EQ(f1->error(), 0) << "earlier work completed; only f3 failed";
  EXPECT_EQ(f3->error(), -EIO);
  EXPECT_EQ(order, (std::vector<std::uint64_t>{f1->seqno(), f2->seqno(), f3->seqno()}));
}

TEST(TimelineTest, SignalThroughAppliesTheErrorToEveryFenceUpToSeqno) {
  auto t = timeline::create("engine");
  auto f1 = t->next_fence();
  auto f2 = t->next_fence();
  auto f3 = t->next_fence();
  t->signal_through(f2->seqno(), -EIO);
  EXPECT_EQ(f1->error(), -EIO);
  EXPECT_EQ(f2->error(), -EIO);
  EXPECT_FALSE(f3->is_signaled());
}

TEST(TimelineTest, FencesOutliveTheirTimelineHandle) {
  fence_ptr f;
  {
    auto t = timeline::create("gone");
    f = t->next_fence();
  }
  EXPECT_TRUE(f->signal());
}

TEST(WaitAnyTest, ReturnsTheIndexOfAnAlreadySignaledFence) {
  std::vector<fence_ptr> fs{make_fence(), make_fence(), make_fence()};
  ASSERT_TRUE(fs[1]->signal());
  auto r = wait_any(fs, 0s);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 1u);
}

TEST(WaitAnyTest, WakesWhenOneFenceSignalsLater) {
  std::vector<fence_ptr> fs{make_fence(), make_fence()};
  std::thread t([&] {
    std::this_thread::sleep_for(10ms);
    (void)fs[1]->signal();
  });
  auto r = wait_any(fs, 10s);
  t.join();
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 1u);
}

TEST(WaitAnyTest, MixesFenceKindsAndTimelines) {
  auto polled = polled_fence::make();
  auto t = timeline::create("mixed");
  std::vector<fence_ptr> fs{t->next_fence(), polled, make_fence()};
  polled->hw_done = true;
  auto r = wait_any(fs, 0s);
  ASSERT_TRUE(r);
  EXPECT_EQ(*r, 1u);
}

TEST(WaitAnyTest, TimesOutCancelsAndRejectsBadInput) {
  std::vector<fence_ptr> fs{make_fence(), make_fence()};
  EXPECT_EQ(wait_any(fs, 10ms).code(), errc::timed_out);
  cancel_token cancel;
  cancel.cancel();
  EXPECT_EQ(wait_any(fs, wait_forever, &cancel).code(), errc::cancelled);
  EXPECT_EQ(wait_any({}, 0s).code(), errc::invalid_argument);
  std::vector<fence_ptr> with_null{make_fence(), nullptr};
  auto r = wait_any(with_null, 0s);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("fence 1"), std::string::npos) << r.err().message;
}

TEST(WaitAllTest, WaitsForEveryFence) {
  std::vector<fence_ptr> fs{make_fence(), make_fence(), make_fence()};
  ASSERT_TRUE(fs[0]->signal());
  std::thread t([&] {
    std::this_thread::sleep_for(5ms);
    (void)fs[2]->signal();
    std::this_thread::sleep_for(5ms);
    (void)fs[1]->signal(-EIO);
  });
  EXPECT_TRUE(wait_all(fs, 10s));
  for (auto& f : fs) EXPECT_TRUE(f->is_signaled());
  t.join();
}

TEST(WaitAllTest, TimesOutWhileOneFenceIsPending) {
  std::vector<fence_ptr> fs{fence::signaled(), make_fence()};
  EXPECT_EQ(wait_all(fs, 10ms).code(), errc::timed_out);
  EXPECT_TRUE(wait_all({}, 0s)) << "nothing to wait for";
  std::vector<fence_ptr> with_null{nullptr};
  EXPECT_EQ(wait_all(with_null, 0s).code(), errc::invalid_argument);
}

}  // namespace
}  // namespace xbuf
