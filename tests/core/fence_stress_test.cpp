// SPDX-License-Identifier: MIT
// Many threads waiting on, adding callbacks to and signaling fences at once.
// Bounded by iteration counts (and XBUF_STRESS_SECONDS for longer runs); run
// under ThreadSanitizer in CI.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "core/fence.hpp"
#include "core/timeline.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

// Rounds scale with XBUF_STRESS_SECONDS (default: a quick CI run).
int rounds(int base) {
  if (const char* s = std::getenv("XBUF_STRESS_SECONDS")) return base * std::max(1, std::atoi(s));
  return base;
}

TEST(FenceStressTest, EveryWaiterSeesEveryFenceSignalExactlyOnce) {
  constexpr int waiters = 6;
  const int n = rounds(300);
  std::atomic<int> woken{0};
  std::atomic<int> callbacks{0};
  for (int round = 0; round < n; ++round) {
    auto t = timeline::create("stress");
    std::vector<fence_ptr> fs;
    for (int i = 0; i < 4; ++i) fs.push_back(t->next_fence());
    std::vector<std::thread> threads;
    for (int w = 0; w < waiters; ++w) {
      threads.emplace_back([&, w] {
        if (w % 3 == 0) {
          if (fs[static_cast<std::size_t>(w) % fs.size()]->wait(10s)) ++woken;
        } else if (w % 3 == 1) {
          if (wait_any(fs, 10s)) ++woken;
        } else {
          if (wait_all(fs, 10s)) ++woken;
        }
      });
    }
    for (auto& f : fs) {
      (void)f->add_callback([&](const fence&) { ++callbacks; });
    }
    std::thread signaler([&] {
      // Signal out of order: the timeline must signal earlier ones first.
      (void)fs[2]->signal();
      (void)fs[3]->signal();
    });
    signaler.join();
    for (auto& th : threads) th.join();
    for (auto& f : fs) ASSERT_TRUE(f->is_signaled());
  }
  EXPECT_EQ(woken.load(), n * waiters);
  // Callbacks may be added after a fence signaled (then refused), never run twice.
  EXPECT_LE(callbacks.load(), n * 4);
}

TEST(FenceStressTest, RemoveCallbackRacingSignalRunsEachCallbackAtMostOnce) {
  const int n = rounds(2000);
  int ran_or_removed_mismatch = 0;
  for (int i = 0; i < n; ++i) {
    auto f = fence::create(fence::allocate_context(), 1);
    std::atomic<int> calls{0};
    auto id = f->add_callback([&](const fence&) { calls.fetch_add(1); });
    ASSERT_TRUE(id);
    std::thread signaler([&] { (void)f->signal(); });
    const bool removed = f->remove_callback(*id);
    signaler.join();
    // Exactly one of: removed before running, or ran (and remove said false).
    if (removed == (calls.load() == 1)) ++ran_or_removed_mismatch;
    ASSERT_LE(calls.load(), 1);
  }
  EXPECT_EQ(ran_or_removed_mismatch, 0);
}

TEST(FenceStressTest, CancelRacingSignalNeverHangsAWaiter) {
  const int n = rounds(500);
  std::atomic<int> ok_count{0};
  std::atomic<int> cancelled_count{0};
  for (int i = 0; i < n; ++i) {
    auto f = fence::create(fence::allocate_context(), 1);
    cancel_token cancel;
    std::thread waiter([&] {
      auto s = f->wait(30s, &cancel);
      if (s) {
        ++ok_count;
      } else if (s.code() == errc::cancelled) {
        ++cancelled_count;
      } else {
        ADD_FAILURE() << "unexpected wait result " << s.err().describe();
      }
    });
    if (i % 2 == 0) {
      cancel.cancel();
      (void)f->signal();
    } else {
      (void)f->signal();
      cancel.cancel();
    }
    waiter.join();
  }
  EXPECT_EQ(ok_count.load() + cancelled_count.load(), n);
}

}  // namespace
}  // namespace xbuf
