// SPDX-License-Identifier: MIT
// Stress for ww_mutex acquire contexts and reservations: many threads lock
// random sets of buffers in random order (the deadlock-prone pattern), and
// many threads add fences to, wait on and signal reservations at once.
//
// Bounded by an iteration count AND a wall-clock cap so that a CI run on two
// cores (and under ThreadSanitizer, ~10x slower) takes a few seconds. Set
// XBUF_STRESS_SECONDS=N to run for N seconds instead (no iteration bound).
// Data races on the plain (non-atomic) fields below are what ThreadSanitizer
// would report if mutual exclusion broke.
#include "core/reservation.hpp"
#include "core/timeline.hpp"
#include "core/ww_mutex.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <future>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace xbuf {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct budget {
  std::uint64_t iterations;        // per thread
  std::chrono::milliseconds wall;  // for the whole run
};

budget stress_budget(std::uint64_t default_iterations) {
  if (const char* s = std::getenv("XBUF_STRESS_SECONDS")) {
    const int seconds = std::max(1, std::atoi(s));
    return {std::numeric_limits<std::uint64_t>::max(), std::chrono::seconds(seconds)};
  }
  return {default_iterations, 2000ms};
}

// One buffer as the stress sees it: the lock plus fields that only the lock
// holder may touch.
struct slot {
  ww_mutex lock;
  int owner = 0;             // 0 = nobody; set by the holder, must not change under it
  std::uint64_t bumps = 0;   // incremented once per acquisition
};

// Distinct random indices in random order.
std::vector<std::size_t> pick(std::mt19937& rng, std::size_t count, std::size_t of) {
  std::vector<std::size_t> all(of);
  for (std::size_t i = 0; i < of; ++i) all[i] = i;
  std::shuffle(all.begin(), all.end(), rng);
  all.resize(count);
  return all;
}

TEST(WwMutexStressTest, RandomSetsInRandomOrderNeverDeadlockOrOverlap) {
  constexpr std::size_t threads = 8;
  constexpr std::size_t slots = 32;
  constexpr std::size_t per_set = 4;
  const budget b = stress_budget(4000);
  std::vector<slot> table(slots);

  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> acquisitions{0};
  std::atomic<std::uint64_t> backoffs{0};
  std::atomic<std::uint64_t> violations{0};
  std::atomic<std::uint64_t> trylock_busy{0};
  std::atomic<std::size_t> finished{0};
  std::atomic<std::uint64_t> aborted{0};
  // Fired only if the workers hang (deadlock): turns a hung test into a
  // failed one, since every blocking lock below is cancellable.
  cancel_token abort;

  auto check_and_bump = [&](slot& s, int me) {
    if (s.owner != 0) violations.fetch_add(1);
    s.owner = me;
    std::this_thread::yield();  // widen the window in which a second holder would show
    if (s.owner != me) violations.fetch_add(1);
    ++s.bumps;
  };
  auto release_mark = [&](slot& s, int me) {
    if (s.owner != me) violations.fetch_add(1);
    s.owner = 0;
  };

  auto worker = [&](std::size_t index) {
    const int me = static_cast<int>(index) + 1;
    std::mt19937 rng(static_cast<std::uint32_t>(index * 7919 + 1));
    // Half the threads use lock_all, half do the dance by hand, so both the
    // helper and the raw lock/lock_slow protocol are exercised.
    const bool by_hand = index % 2 == 1;
    std::uint64_t mine = 0;
    for (std::uint64_t it = 0; it < b.iterations && !stop.load(std::memory_order_relaxed); ++it) {
      if (it % 16 == 7) {
        // An eviction-style probe: never blocks, never backs off.
        slot& s = table[rng() % slots];
        if (s.lock.trylock()) {
          check_and_bump(s, me);
          release_mark(s, me);
          s.lock.unlock();
          ++mine;
        } else {
          trylock_busy.fetch_add(1, std::memory_order_relaxed);
        }
        continue;
      }
      if (it % 16 == 11) {
        // A single-buffer path without a context.
        slot& s = table[rng() % slots];
        if (!s.lock.lock(&abort)) {
          aborted.fetch_add(1);
          break;
        }
        check_and_bump(s, me);
        release_mark(s, me);
        s.lock.unlock();
        ++mine;
        continue;
      }

      const auto set = pick(rng, per_set, slots);
      ww_acquire_ctx ctx;
      bool cancelled = false;
      if (by_hand) {
        ww_mutex* slow = nullptr;
        for (bool again = true; again && !cancelled;) {
          again = false;
          if (slow != nullptr && !slow->lock_slow(ctx, &abort)) {
            cancelled = true;
            break;
          }
          for (std::size_t i : set) {
            status st = table[i].lock.lock(ctx, &abort);
            if (st || st.code() == errc::already_exists) continue;
            ctx.unlock_all();
            if (st.code() == errc::would_deadlock) {
              slow = ctx.contended();
              again = true;
            } else {
              cancelled = true;
            }
            break;
          }
        }
      } else {
        std::vector<ww_mutex*> locks;
        for (std::size_t i : set) locks.push_back(&table[i].lock);
        cancelled = !lock_all(ctx, locks, &abort);
      }
      if (cancelled) {
        ctx.unlock_all();
        aborted.fetch_add(1);
        break;
      }
      ctx.done();
      if (ctx.held_count() != per_set) violations.fetch_add(1);
      for (std::size_t i : set) check_and_bump(table[i], me);
      for (std::size_t i : set) release_mark(table[i], me);
      ctx.unlock_all();
      mine += per_set;
      backoffs.fetch_add(ctx.backoffs(), std::memory_order_relaxed);
    }
    acquisitions.fetch_add(mine);
    finished.fetch_add(1);
  };

  const auto start = steady::now();
  std::vector<std::future<void>> running;
  for (std::size_t i = 0; i < threads; ++i) running.push_back(std::async(std::launch::async, worker, i));
  // The cap: stop asking for more iterations once the wall budget is spent.
  while (finished.load() < threads && steady::now() - start < b.wall) std::this_thread::sleep_for(5ms);
  stop = true;
  // A deadlock shows up as workers that do not finish after stop: cancel
  // their waits so the test fails instead of hanging.
  const auto grace = steady::now() + 30s;
  while (finished.load() < threads && steady::now() < grace) std::this_thread::sleep_for(5ms);
  if (finished.load() < threads) abort.cancel();
  for (auto& f : running) f.wait();
  const auto elapsed = std::chrono::duration<double>(steady::now() - start).count();

  std::uint64_t bumps = 0;
  for (const slot& s : table) {
    bumps += s.bumps;
    EXPECT_EQ(s.owner, 0);
    EXPECT_FALSE(s.lock.is_locked());
  }
  std::printf("ww_mutex stress: %zu threads, %llu acquisitions, %llu back-offs, %llu busy trylocks, %.2f s\n",
              threads, static_cast<unsigned long long>(acquisitions.load()),
              static_cast<unsigned long long>(backoffs.load()),
              static_cast<unsigned long long>(trylock_busy.load()), elapsed);
  RecordProperty("acquisitions", std::to_string(acquisitions.load()));
  RecordProperty("backoffs", std::to_string(backoffs.load()));

  EXPECT_EQ(aborted.load(), 0u) << "workers hung in lock waits (deadlock) and were cancelled";
  EXPECT_GT(acquisitions.load(), 0u);
  EXPECT_EQ(bumps, acquisitions.load()) << "a bump was lost: two holders at once";
  EXPECT_GT(backoffs.load(), 0u) << "no context ever backed off: the stress did not collide";
  EXPECT_EQ(violations.load(), 0u) << "mutual exclusion or protocol violated";
}

// A queue of fences waiting for a "device" to finish them.
class work_queue {
 public:
  void push(fence_ptr f) {
    std::lock_guard guard(mutex_);
    fences_.push_back(std::move(f));
  }
  fence_ptr pop() {
    std::lock_guard guard(mutex_);
    if (fences_.empty()) return nullptr;
    fence_ptr f = std::move(fences_.front());
    fences_.pop_front();
    return f;
  }

 private:
  std::mutex mutex_;
  std::deque<fence_ptr> fences_;
};

TEST(WwMutexStressTest, FencesAddedWaitedAndSignaledConcurrently) {
  constexpr std::size_t reservations = 8;
  constexpr std::size_t adders = 3;
  constexpr std::size_t signalers = 2;
  constexpr std::size_t waiters = 3;
  const budget b = stress_budget(1500);
  std::vector<reservation> resv(reservations);
  work_queue queue;

  std::atomic<bool> stop{false};
  std::atomic<std::size_t> adders_done{0};
  std::atomic<std::uint64_t> added{0};
  std::atomic<std::uint64_t> signaled{0};
  std::atomic<std::uint64_t> waits_ok{0};
  std::atomic<std::uint64_t> waits_timed_out{0};
  std::atomic<std::uint64_t> violations{0};
  std::atomic<std::uint64_t> backoffs{0};
  std::atomic<std::size_t> waiters_started{0};

  auto adder = [&](std::size_t index) {
    std::mt19937 rng(static_cast<std::uint32_t>(index * 104729 + 3));
    // Start once the waiters run, so adding and waiting really overlap.
    while (waiters_started.load() < waiters && !stop.load()) std::this_thread::yield();
    // One timeline per adder, so same-context replacement is exercised too.
    auto tl = timeline::create("adder" + std::to_string(index));
    for (std::uint64_t it = 0; it < b.iterations && !stop.load(std::memory_order_relaxed); ++it) {
      const auto set = pick(rng, 2, reservations);
      ww_acquire_ctx ctx;
      std::vector<ww_mutex*> locks{&resv[set[0]].mutex(), &resv[set[1]].mutex()};
      if (!lock_all(ctx, locks)) violations.fetch_add(1);
      ctx.done();
      bool reserved = true;
      for (std::size_t i : set) reserved = resv[i].reserve_fences(1).has_value() && reserved;
      if (!reserved) {
        violations.fetch_add(1);
        ctx.unlock_all();
        continue;
      }
      // The job's fence goes on both buffers only once every reserve worked.
      fence_ptr job = (rng() % 3 == 0) ? fence::create(fence::allocate_context(), 1) : tl->next_fence();
      const auto usage = static_cast<fence_usage>(rng() % 4);
      for (std::size_t i : set) resv[i].add_fence(job, usage);
      ctx.unlock_all();
      backoffs.fetch_add(ctx.backoffs(), std::memory_order_relaxed);
      queue.push(std::move(job));
      added.fetch_add(1, std::memory_order_relaxed);
    }
    adders_done.fetch_add(1);
  };

  auto signaler = [&](std::size_t index) {
    std::mt19937 rng(static_cast<std::uint32_t>(index * 15485863 + 5));
    for (;;) {
      fence_ptr f = queue.pop();
      if (f == nullptr) {
        // Drain completely once every adder is done: no fence is left pending.
        if (adders_done.load() == adders) {
          if ((f = queue.pop()) == nullptr) return;
        } else {
          std::this_thread::yield();
          continue;
        }
      }
      // Some "device resets": the fence signals with an error.
      if (f->signal(rng() % 8 == 0 ? -EIO : 0)) signaled.fetch_add(1, std::memory_order_relaxed);
    }
  };

  auto waiter = [&](std::size_t index) {
    std::mt19937 rng(static_cast<std::uint32_t>(index * 32452843 + 7));
    waiters_started.fetch_add(1);
    while (!stop.load(std::memory_order_relaxed)) {
      reservation& r = resv[rng() % reservations];
      const auto usage = static_cast<fence_usage>(rng() % 4);
      // Every fence seen before the wait must be signaled once it returns ok
      // (a replaced one is an earlier fence of the same timeline, signaled
      // no later than its replacement).
      const auto before = r.fences(usage);
      status s = r.wait(usage, 100ms);
      if (s) {
        waits_ok.fetch_add(1, std::memory_order_relaxed);
        for (const auto& f : before) {
          if (!f->is_signaled()) violations.fetch_add(1);
        }
      } else if (s.code() == errc::timed_out) {
        waits_timed_out.fetch_add(1, std::memory_order_relaxed);
      } else {
        violations.fetch_add(1);
      }
    }
  };

  const auto start = steady::now();
  std::vector<std::future<void>> running;
  for (std::size_t i = 0; i < adders; ++i) running.push_back(std::async(std::launch::async, adder, i));
  for (std::size_t i = 0; i < signalers; ++i) running.push_back(std::async(std::launch::async, signaler, i));
  for (std::size_t i = 0; i < waiters; ++i) running.push_back(std::async(std::launch::async, waiter, i));
  constexpr std::uint64_t min_waits = 100;
  while ((adders_done.load() < adders || waits_ok.load() < min_waits) && steady::now() - start < b.wall) {
    std::this_thread::sleep_for(5ms);
  }
  stop = true;
  for (auto& f : running) {
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready) << "a stress thread hung";
  }
  const auto elapsed = std::chrono::duration<double>(steady::now() - start).count();

  std::printf("reservation stress: %llu fences added, %llu signaled, %llu waits ok, %llu timed out, "
              "%llu back-offs, %.2f s\n",
              static_cast<unsigned long long>(added.load()), static_cast<unsigned long long>(signaled.load()),
              static_cast<unsigned long long>(waits_ok.load()),
              static_cast<unsigned long long>(waits_timed_out.load()),
              static_cast<unsigned long long>(backoffs.load()), elapsed);

  EXPECT_GT(added.load(), 0u);
  EXPECT_GT(waits_ok.load(), 0u);
  EXPECT_EQ(violations.load(), 0u);
  // Every fence was signaled by the drain, so everything is idle now, and one
  // more reserve (which prunes) leaves the containers empty.
  for (auto& r : resv) {
    EXPECT_TRUE(r.test_signaled(fence_usage::bookkeep));
    EXPECT_TRUE(r.wait(fence_usage::bookkeep, 0s));
    std::lock_guard guard(r.mutex());
    ASSERT_TRUE(r.reserve_fences(1));
    EXPECT_EQ(r.fence_count(), 0u) << "signaled fences were kept";
  }
}

}  // namespace
}  // namespace xbuf
