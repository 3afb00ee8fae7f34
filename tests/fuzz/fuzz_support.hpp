// SPDX-License-Identifier: MIT
//
// fuzz_support.hpp - what the fuzz targets and the corpus generator share:
// the layout of each target's input, a byte cursor to read it, and the
// invariant check that turns a broken invariant into a libFuzzer crash.
//
// Overview
//   A fuzz input is not only wire bytes: each target spends a few bytes on
//   how to deliver them (chunk sizes, which client sends), so that libFuzzer
//   can mutate the delivery as well as the content. The layouts are written
//   once, here, because make_corpus.cpp writes what the targets read.
//
//   frame_parser_fuzz input:
//     byte 0      bit 0: side (1 = the daemon's, requests; 0 = the client's)
//                 bits 1-7 with byte 1: the chunking seed
//     bytes 2..   the byte stream, fed to one frame_parser in chunks whose
//                 sizes the seed picks (0 to max_payload + header bytes)
//
//   handlers_fuzz input: records, until the bytes run out.
//     control u8  bit 0: client slot (a or b)
//                 bits 1-2: record kind (handlers_record)
//                 bits 3-7: split point for kind split_request
//     raw           u8 length, then that many bytes for the slot's parser
//     request       u8 op (request type = first_request + op % 16), then
//                   that op's fields (handlers_fuzz.cpp: build_request)
//     split_request as request, the frame fed in two chunks
//     hang_up       the slot's client disconnects; its next record
//                   connects a new client (a new owner, not greeted)
//
// Rules
//   - A broken invariant aborts (libFuzzer saves the input as a crash);
//     nothing here throws, so no check can be swallowed on the way.
//   - Reading past the end of an input yields zeros: every prefix of an
//     input is an input, which is what libFuzzer's mutations produce.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

namespace xbuf::fuzz {

// Aborts with `what` and the caller's line when `ok` is false. The caller
// comes from __builtin_FILE/LINE: clang 14 has no std::source_location.
inline void expect(bool ok, std::string_view what, const char* file = __builtin_FILE(),
                   int line = __builtin_LINE()) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant broken at %s:%d: %.*s\n", file, line,
               static_cast<int>(what.size()), what.data());
  std::fflush(stderr);
  std::abort();
}

// Little-endian reads off the front of an input; zeros once it is used up.
class byte_cursor {
 public:
  explicit byte_cursor(std::span<const std::uint8_t> in) noexcept : in_(in) {}

  bool empty() const noexcept { return pos_ >= in_.size(); }
  std::size_t remaining() const noexcept { return empty() ? 0 : in_.size() - pos_; }

  std::uint8_t u8() noexcept { return empty() ? 0 : in_[pos_++]; }
  std::uint16_t u16() noexcept { return static_cast<std::uint16_t>(le(2)); }
  std::uint32_t u32() noexcept { return static_cast<std::uint32_t>(le(4)); }
  std::uint64_t u64() noexcept { return le(8); }
  // Up to n bytes (fewer at the end of the input).
  std::span<const std::uint8_t> bytes(std::size_t n) noexcept {
    const std::size_t k = n < remaining() ? n : remaining();
    auto s = in_.subspan(pos_, k);
    pos_ += k;
    return s;
  }
  std::string_view text(std::size_t n) noexcept {
    auto s = bytes(n);
    return {reinterpret_cast<const char*>(s.data()), s.size()};
  }

 private:
  std::uint64_t le(int n) noexcept {
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= std::uint64_t{u8()} << (8 * i);
    return v;
  }

  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
};

// frame_parser_fuzz: byte 0's side bit.
inline constexpr std::uint8_t parser_side_requests = 1;

// handlers_fuzz record kinds (control bits 1-2).
enum class handlers_record : std::uint8_t { raw = 0, request = 1, split_request = 2, hang_up = 3 };

inline constexpr std::uint8_t handlers_control(int slot, handlers_record kind,
                                               std::uint8_t split = 0) {
  return static_cast<std::uint8_t>((slot & 1) | (static_cast<int>(kind) << 1) |
                                   ((split & 0x1f) << 3));
}

// handlers_fuzz id picks: a pick byte with this bit takes an id of another
// owner (the ownership check's raw material); pick_literal reads a u64 id.
inline constexpr std::uint8_t pick_other = 0x80;
inline constexpr std::uint8_t pick_literal = 0xff;

}  // namespace xbuf::fuzz
