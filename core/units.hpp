// SPDX-License-Identifier: MIT
//
// units.hpp - byte counts as people read them, for error messages and stats.
#pragma once

#include <cstdint>
#include <string>

namespace xbuf {

// "64 MiB", "1.5 GiB", "4096 B": exact below 1 KiB, one decimal above.
std::string format_bytes(std::uint64_t bytes);

}  // namespace xbuf
