// SPDX-License-Identifier: MIT
#include "core/futex.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>

namespace xbuf {

namespace {

// The kernel reads the word as a plain int; std::atomic<uint32_t> is one
// (static_assert below), and futex only ever loads it.
std::uint32_t* address_of(const std::atomic<std::uint32_t>& word) noexcept {
  static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
  static_assert(std::atomic<std::uint32_t>::is_always_lock_free);
  return const_cast<std::uint32_t*>(reinterpret_cast<const std::uint32_t*>(&word));
}

}  // namespace

bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                fence_clock::time_point deadline) noexcept {
  // fence_clock is steady_clock, CLOCK_MONOTONIC: FUTEX_WAIT_BITSET takes an
  // absolute deadline on that clock, so a long sleep does not drift.
  static_assert(fence_clock::is_steady);
  timespec ts{};
  const timespec* abs = nullptr;
  if (deadline != fence_clock::time_point::max()) {
    if (fence_clock::now() >= deadline) return false;
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(deadline.time_since_epoch()).count();
    ts.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    abs = &ts;
  }
  const long r = syscall(SYS_futex, address_of(word), FUTEX_WAIT_BITSET | FUTEX_PRIVATE_FLAG, expected, abs,
                         nullptr, FUTEX_BITSET_MATCH_ANY);
  return !(r == -1 && errno == ETIMEDOUT);
}

void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept {
  (void)syscall(SYS_futex, address_of(word), FUTEX_WAKE | FUTEX_PRIVATE_FLAG, INT_MAX, nullptr, nullptr, 0);
}

}  // namespace xbuf
