// SPDX-License-Identifier: MIT
//
// futex.hpp - sleeping on a 32-bit word until another thread changes it.
//
// The primitive under fence::wait (core/fence.hpp): a waiting thread sleeps
// in the kernel on the word itself, with no mutex or condition variable
// between it and the signaler, so a signal wakes it with one syscall and it
// runs without first fighting the signaler for a lock (on one CPU that fight
// was an extra pair of context switches per wait).
//
// Rules
//   - Process-private words only (FUTEX_PRIVATE_FLAG): never in memory
//     shared with another process.
//   - futex_wait returns on a wake, on a spurious wakeup, on a signal, or when
//     the word no longer holds `expected`: callers re-check their condition
//     in a loop. Its only report is whether the deadline passed.
//   - Memory ordering is the caller's: change the word with an atomic RMW
//     (seq_cst), then wake.
#pragma once

#include <atomic>
#include <cstdint>

#include "core/clock.hpp"

namespace xbuf {

// Sleeps while `word` holds `expected`, until woken or `deadline`
// (time_point::max(): no deadline). Returns false when the deadline passed.
// Context: blocks.
bool futex_wait(const std::atomic<std::uint32_t>& word, std::uint32_t expected,
                fence_clock::time_point deadline) noexcept;

// Wakes every thread sleeping in futex_wait on `word`. Context: never blocks.
void futex_wake_all(const std::atomic<std::uint32_t>& word) noexcept;

}  // namespace xbuf
