// SPDX-License-Identifier: MIT
//
// fence_bench - what a fence costs between two threads (issue 11, "fence
// ping-pong, one CPU").
//
// Two threads on the same CPU pass the turn back and forth. Each pass, one
// thread signals a new fence the other waits on: a fence signal + wait
// round trip per half-pass. The limit is the least a blocking hand-off can
// cost: the same ping-pong over one mutex, one condition variable and a
// turn flag. Both sides are pinned to one CPU (sched_setaffinity), so every
// hand-off is a context switch and nothing spins its way out of one.
// Fences are made before timing (one per hand-off): what is measured is
// signal() waking a waiter, and wait() sleeping until it does.
//
//   fence_bench [--short]
#include <pthread.h>
#include <sched.h>

#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "bench/common/report.hpp"
#include "core/fence.hpp"

namespace {

using namespace xbuf;

// Pins the calling thread to `cpu`; false if the machine refuses.
bool pin_to(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0;
}

int first_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
  for (int i = 0; i < CPU_SETSIZE; ++i) {
    if (CPU_ISSET(i, &set)) return i;
  }
  return 0;
}

// ns per round trip (two hand-offs) through fences.
double fence_pingpong(int rounds, int cpu) {
  // One fence per hand-off, made before timing: as a move's fence exists
  // before anyone waits on it.
  std::vector<fence_ptr> keep_ping(static_cast<std::size_t>(rounds)), keep_pong(keep_ping.size());
  const auto ctx = fence::allocate_context();
  for (std::size_t i = 0; i < keep_ping.size(); ++i) {
    keep_ping[i] = fence::create(ctx, 2 * i + 1);
    keep_pong[i] = fence::create(ctx, 2 * i + 2);
  }
  std::thread other([&] {
    (void)pin_to(cpu);
    for (std::size_t i = 0; i < keep_ping.size(); ++i) {
      if (!keep_ping[i]->wait()) std::abort();
      (void)keep_pong[i]->signal();
    }
  });
  (void)pin_to(cpu);
  const double s = bench::seconds_of([&] {
    for (std::size_t i = 0; i < keep_ping.size(); ++i) {
      (void)keep_ping[i]->signal();
      if (!keep_pong[i]->wait()) std::abort();
    }
  });
  other.join();
  return s * 1e9 / rounds;
}

// ns per round trip (two hand-offs) through a condition variable.
double condvar_pingpong(int rounds, int cpu) {
  std::mutex m;
  std::condition_variable cv;
  int turn = 0;  // even: ping's to give; odd: pong's
  std::thread other([&] {
    (void)pin_to(cpu);
    for (int i = 0; i < rounds; ++i) {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return turn == 2 * i + 1; });
      ++turn;
      cv.notify_all();
    }
  });
  (void)pin_to(cpu);
  const double s = bench::seconds_of([&] {
    for (int i = 0; i < rounds; ++i) {
      std::unique_lock lock(m);
      ++turn;
      cv.notify_all();
      cv.wait(lock, [&] { return turn == 2 * i + 2; });
    }
  });
  other.join();
  return s * 1e9 / rounds;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = bench::short_mode(argc, argv);
  const int reps = quick ? 3 : 11;
  const int rounds = quick ? 2000 : 20000;
  const int cpu = first_cpu();
  std::fprintf(stderr, "fence_bench: %d repetitions of %d round trips, both threads on CPU %d\n", reps,
               rounds, cpu);
  bench::figure f{"fence_pingpong", "ns", "condvar ping-pong, same CPU", bench::at_most(1.2), {}, {}};
  (void)fence_pingpong(rounds / 4, cpu);  // warm: allocator, page faults, the futex path
  (void)condvar_pingpong(rounds / 4, cpu);
  for (int r = 0; r < reps; ++r) {
    const double lim = condvar_pingpong(rounds, cpu);
    const double val = fence_pingpong(rounds, cpu);
    f.add(val, lim);
  }
  bench::report(f, "\"round_trips\":" + std::to_string(rounds));
  return 0;
}
