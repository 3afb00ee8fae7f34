// SPDX-License-Identifier: MIT
//
// Memory manager stress, after the recipe TTM's maintainers use: simulated
// VRAM much smaller than the working set; client threads that allocate,
// recycle, attach (pinned and dynamic), map, validate, fence and free buffers
// at random; 1 in 20 waits cancelled as if by a signal; copy faults, slow
// fences and device resets injected meanwhile. Afterwards every heap must be
// empty, every checksum intact, and nothing may have deadlocked.
//
// Bounded for CI (a fixed number of operations per client); set
// XBUF_STRESS_SECONDS=N to run for N seconds instead.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "tests/common/sim_manager.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;
using test::KiB;
using test::MiB;

struct client_buffer {
  buffer_id id = 0;
  std::uint32_t seed = 0;
  std::vector<attachment_id> attachments;
};

// What one importer's move_notify observed.
struct notify_log {
  std::atomic<std::uint64_t> notices{0};
};

struct shared_counters {
  std::atomic<std::uint64_t> ops{0};
  std::atomic<std::uint64_t> checksum_failures{0};
  std::atomic<std::uint64_t> cancelled_waits{0};
  std::atomic<std::uint64_t> expected_failures{0};
  std::atomic<std::uint64_t> stale_maps{0};
};

bool acceptable(errc code) {
  switch (code) {
    case errc::out_of_memory:
    case errc::quota_exceeded:
    case errc::unsupported:
    case errc::timed_out:
    case errc::cancelled:
      return true;
    default:
      return false;
  }
}

class client {
 public:
  client(owner_id owner, memory_manager& mm, shared_counters& c, std::uint32_t seed)
      : owner_(owner), mm_(mm), c_(c), rng_(seed) {}

  void step() {
    c_.ops.fetch_add(1);
    switch (rng_() % 12) {
      case 0: case 1: case 2: allocate(); break;
      case 3: verify(); break;
      case 4: attach(attach_mode::dynamic); break;
      case 5: attach(attach_mode::pinned); break;
      case 6: detach(); break;
      case 7: validate(); break;
      case 8: fence(); break;
      case 9: case 10: release(); break;
      default: signal_fences(); break;
    }
  }

  void finish() {
    signal_fences();
    for (auto& b : buffers_) {
      for (auto a : b.attachments) expect_ok(mm_.detach(owner_, a), "detach");
      if (!test::holds(mm_, owner_, b.id, b.seed)) c_.checksum_failures.fetch_add(1);
      expect_ok(mm_.free(owner_, b.id), "free");
    }
    buffers_.clear();
  }

 private:
  void expect_ok(const status& s, const char* what) {
    if (s) return;
    if (acceptable(s.code())) {
      c_.expected_failures.fetch_add(1);
      if (s.code() == errc::cancelled) c_.cancelled_waits.fetch_add(1);
      return;
    }
    ADD_FAILURE() << what << ": " << s.err().describe();
  }
  template <class T>
  bool check(const result<T>& r, const char* what) {
    if (r) return true;
    if (acceptable(r.code())) {
      c_.expected_failures.fetch_add(1);
      if (r.code() == errc::cancelled) c_.cancelled_waits.fetch_add(1);
    } else {
      ADD_FAILURE() << what << ": " << r.err().describe();
    }
    return false;
  }
  // One wait in twenty is cancelled, as if a signal arrived.
  const cancel_token* maybe_cancelled() {
    if (rng_() % 20 != 0) return nullptr;
    cancelled_.cancel();
    return &cancelled_;
  }
  client_buffer* pick() {
    if (buffers_.empty()) return nullptr;
    return &buffers_[rng_() % buffers_.size()];
  }

  void allocate() {
    if (buffers_.size() >= 8) return release();
    const int dev = static_cast<int>(rng_() % 2);
    alloc_request r;
    r.size = (1 + rng_() % 16) * 16 * KiB;
    r.placements = {placement::vram(dev), placement::vram(1 - dev), placement::pinned(),
                    placement::pageable()};
    if (rng_() % 3 == 0) r.placements = {placement::vram(dev), placement::pageable()};
    r.timeout = 2s;
    r.cancel = maybe_cancelled();
    auto id = mm_.allocate(owner_, r);
    if (!check(id, "allocate")) return;
    client_buffer b{*id, static_cast<std::uint32_t>(rng_()), {}};
    test::fill(mm_, owner_, b.id, b.seed);
    buffers_.push_back(b);
  }

  void verify() {
    if (auto* b = pick()) {
      if (!test::holds(mm_, owner_, b->id, b->seed)) c_.checksum_failures.fetch_add(1);
    }
  }

  void attach(attach_mode mode) {
    auto* b = pick();
    if (b == nullptr || b->attachments.size() >= 2) return;
    attach_request req;
    req.device = static_cast<int>(rng_() % 3) - 1;  // CPU, GPU0 or GPU1
    req.mode = mode;
    req.peer_capable = rng_() % 2 == 0;
    if (mode == attach_mode::dynamic) {
      req.move_notify = [log = &log_](const move_notice&) { log->notices.fetch_add(1); };
    }
    auto a = mm_.attach(owner_, b->id, req, maybe_cancelled());
    if (!check(a, "attach")) return;
    b->attachments.push_back(*a);
    auto m1 = mm_.map(owner_, *a, maybe_cancelled());
    if (!check(m1, "map")) return;
    // The memory is usable once the move that placed it has finished.
    if (!m1->wait_for->wait(5s)) ADD_FAILURE() << "map fence never signaled";
    auto again = mm_.map(owner_, *a);
    if (check(again, "map again") && again->generation < m1->generation) c_.stale_maps.fetch_add(1);
    if (rng_() % 2) expect_ok(mm_.unmap(owner_, *a), "unmap");
  }

  void detach() {
    auto* b = pick();
    if (b == nullptr || b->attachments.empty()) return;
    expect_ok(mm_.detach(owner_, b->attachments.back()), "detach");
    b->attachments.pop_back();
  }

  void validate() {
    std::vector<buffer_id> ids;
    for (auto& b : buffers_) {
      if (rng_() % 2) ids.push_back(b.id);
    }
    check(mm_.validate(owner_, ids, maybe_cancelled()), "validate");
  }

  void fence() {
    auto* b = pick();
    if (b == nullptr) return;
    auto f = fence::create(fence::allocate_context(), 1);
    const auto usage = rng_() % 2 ? fence_usage::read : fence_usage::write;
    // Deadlines keep a forgotten fence from stalling evictions for long.
    expect_ok(mm_.add_fence(owner_, b->id, f, usage, fence_clock::now() + 5ms), "add_fence");
    pending_.push_back(f);
  }

  void signal_fences() {
    for (auto& f : pending_) (void)f->signal();
    pending_.clear();
  }

  void release() {
    if (buffers_.empty()) return;
    const std::size_t i = rng_() % buffers_.size();
    auto b = buffers_[i];
    buffers_.erase(buffers_.begin() + static_cast<std::ptrdiff_t>(i));
    if (!test::holds(mm_, owner_, b.id, b.seed)) c_.checksum_failures.fetch_add(1);
    for (auto a : b.attachments) expect_ok(mm_.detach(owner_, a), "detach");
    expect_ok(mm_.free(owner_, b.id), "free");
  }

  const owner_id owner_;
  memory_manager& mm_;
  shared_counters& c_;
  std::mt19937 rng_;
  cancel_token cancelled_;
  notify_log log_;
  std::vector<client_buffer> buffers_;
  std::vector<fence_ptr> pending_;
};

TEST(MemoryManagerStressTest, ManyClientsOversubscribingSmallVramWithFaults) {
  const char* env = std::getenv("XBUF_STRESS_SECONDS");
  const auto run_for = std::chrono::seconds(env ? std::max(1, std::atoi(env)) : 0);
  const int ops_per_client = env ? std::numeric_limits<int>::max() : 250;

  test::sim_manager_options o;
  o.vram = 1 * MiB;  // per GPU; 4 clients x 8 buffers x up to 256 KiB is several times that
  o.pinned = 4 * MiB;
  o.pageable = 64 * MiB;
  o.pinned_limit = 2 * MiB;
  o.move_retries = 8;
  o.promote_interval = 2ms;
  o.peer_policy = [](int a, int b) { return peer_decision{(a + b) % 2 == 1, "stress: 0<->1 allowed"}; };
  test::sim_manager s(o);

  shared_counters counters;
  std::atomic<bool> stop{false};
  const auto start = std::chrono::steady_clock::now();

  // Faults: failed copies (fewer than the move retries, so contents must
  // survive), slow fences, and device resets with recovery.
  std::thread injector([&] {
    std::mt19937 rng(7);
    while (!stop.load()) {
      const int dev = static_cast<int>(rng() % 2);
      switch (rng() % 4) {
        case 0: (void)s.sim->fail_next_copies(dev, 1); break;
        case 1: (void)s.sim->set_fence_delay(dev, std::chrono::microseconds(rng() % 500)); break;
        case 2: (void)s.sim->set_fence_delay(dev, fence_clock::duration::zero()); break;
        default: (void)s.sim->reset_device(dev, sim_reset_mode::recover); break;
      }
      std::this_thread::sleep_for(2ms);
    }
    for (int d = 0; d < 2; ++d) (void)s.sim->set_fence_delay(d, fence_clock::duration::zero());
  });

  std::vector<std::thread> threads;
  for (owner_id owner = 1; owner <= 4; ++owner) {
    threads.emplace_back([&, owner] {
      client c(owner, *s.mm, counters, owner * 7919u);
      for (int i = 0; i < ops_per_client; ++i) {
        if (env && std::chrono::steady_clock::now() - start > run_for) break;
        c.step();
      }
      c.finish();
    });
  }
  for (auto& t : threads) t.join();
  stop = true;
  injector.join();
  const auto elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Delayed frees end when their fences signal; every fence is signaled now
  // or has a deadline, so the heaps drain.
  manager_stats st;
  for (int i = 0; i < 500; ++i) {
    st = s.mm->stats();
    bool empty = true;
    for (auto& d : st.domains) empty = empty && d.used == 0;
    if (empty) break;
    std::this_thread::sleep_for(10ms);
  }
  for (auto& d : st.domains) {
    EXPECT_EQ(d.used, 0u) << d.name << " leaked";
    EXPECT_EQ(d.buffers, 0u) << d.name;
  }
  EXPECT_EQ(st.pinned_bytes, 0u);
  EXPECT_TRUE(s.mm->buffers().empty());
  EXPECT_EQ(counters.checksum_failures.load(), 0u);
  EXPECT_EQ(counters.stale_maps.load(), 0u);
  EXPECT_EQ(st.counters.failed_moves, 0u) << "a fault outlived every retry";
  EXPECT_GT(st.counters.evictions, 0u) << "the working set must not fit";
  EXPECT_GT(counters.cancelled_waits.load() + counters.expected_failures.load(), 0u);

  std::printf(
      "stress: %.2f s, %llu ops, %llu allocations, %llu evictions, %llu moves, %.1f MiB moved, "
      "%llu move_notify, %llu delayed frees, %llu promotions, %llu cancelled, %llu refused\n",
      elapsed, static_cast<unsigned long long>(counters.ops.load()),
      static_cast<unsigned long long>(st.counters.allocations),
      static_cast<unsigned long long>(st.counters.evictions),
      static_cast<unsigned long long>(st.counters.moves),
      static_cast<double>(st.counters.bytes_moved) / static_cast<double>(MiB),
      static_cast<unsigned long long>(st.counters.move_notifies),
      static_cast<unsigned long long>(st.counters.delayed_frees),
      static_cast<unsigned long long>(st.counters.promotions),
      static_cast<unsigned long long>(counters.cancelled_waits.load()),
      static_cast<unsigned long long>(counters.expected_failures.load()));
}

}  // namespace
}  // namespace xbuf
