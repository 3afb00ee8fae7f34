// SPDX-License-Identifier: MIT
//
// bench/trace/trace.hpp - buffer traces: what a job allocates, uses and frees,
// in order, for replaying through the memory manager and through offline
// simulators (bench/policy_bench.cpp, bench/trace/simulate.hpp).
//
// Overview
//   A trace is a sequence of events, each naming an owner (a job, a tenant),
//   a buffer (unique in the trace, never reused after its free) and, for
//   alloc, a size:
//     alloc : the buffer is created. It is also a use: a job allocates what
//             it is about to write.
//     use   : a job is about to touch the buffer on the device (the manager's
//             validate() into VRAM: it must be resident for the use).
//     free  : the buffer is gone; its memory is free wherever it is.
//   Text form, one event per line (write_text / read_text):
//     a <owner> <buffer> <size>
//     u <owner> <buffer>
//     f <owner> <buffer>
//   Lines starting with '#' are comments (the generator names its shape there).
//
// Rules
//   - check() is the contract: a buffer is allocated once, used and freed
//     only while live, sizes are > 0. Generators produce checked traces;
//     read_text() checks what it reads.
//   - peak_bytes is the most that is live at once, each buffer counted at its
//     block size (block_bytes: the VRAM heap's buddy allocator rounds a size
//     up to a power of two of at least 4 KiB). Capacities in the benchmarks
//     are fractions of it.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace xbuf::trace {

enum class op : std::uint8_t { alloc, use, free };

struct event {
  op kind = op::use;
  std::uint32_t owner = 0;
  std::uint64_t buffer = 0;
  std::uint64_t size = 0;  // alloc: bytes; use, free: the buffer's size (filled by check())
};

struct trace {
  std::string name;  // "training", ...
  std::vector<event> events;
};

// What one buffer occupies in VRAM: bit_ceil(max(size, 4096)).
std::uint64_t block_bytes(std::uint64_t size);

// Checks the rules above and fills use/free sizes. Returns "" when the trace
// is well formed, else what is wrong and at which event.
std::string check(trace& t);

// The most bytes live at once (block_bytes each). The trace must be checked.
std::uint64_t peak_bytes(const trace& t);

// Uses (alloc + use events) and the bytes they name, for reports.
struct trace_summary {
  std::size_t events = 0, uses = 0, buffers = 0;
  std::uint32_t owners = 0;
  std::uint64_t used_bytes = 0;  // sum of the sizes of all uses
  std::uint64_t peak = 0;
};
trace_summary summarize(const trace& t);

void write_text(std::ostream& out, const trace& t);
// Errors: a message naming the line, empty trace on failure.
trace read_text(std::istream& in, std::string* error);

}  // namespace xbuf::trace
