// SPDX-License-Identifier: MIT
//
// whole_number.hpp - the one strict parser of decimal numbers from text
// people type (flags, environment variables): "2x", "", "-1", "+3", " 4"
// and "0x10" are not numbers, and a value outside its range is not one
// either, so every caller can name the text it refuses.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace xbuf {

// `text` as a whole decimal number in [min, max], or nothing.
// Context: pure.
std::optional<std::uint64_t> parse_whole_number(std::string_view text, std::uint64_t min, std::uint64_t max);

}  // namespace xbuf
