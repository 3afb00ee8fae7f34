// SPDX-License-Identifier: MIT
//
// core/whole_number: what is a number and what is not.
#include "core/whole_number.hpp"

#include <gtest/gtest.h>

#include <cstdint>

namespace xbuf {
namespace {

TEST(WholeNumberTest, DecimalDigitsInRangeAreNumbers) {
  EXPECT_EQ(parse_whole_number("0", 0, 10), 0u);
  EXPECT_EQ(parse_whole_number("10", 0, 10), 10u);
  EXPECT_EQ(parse_whole_number("007", 0, 10), 7u);
  EXPECT_EQ(parse_whole_number("9999999999999999999", 0, UINT64_MAX), 9999999999999999999ull);
}

TEST(WholeNumberTest, AnythingElseIsNot) {
  for (const char* bad : {"", "2x", "-1", "+3", " 4", "4 ", "0x10", "1.5", "99999999999999999999"}) {
    EXPECT_FALSE(parse_whole_number(bad, 0, UINT64_MAX)) << "'" << bad << "'";
  }
  EXPECT_FALSE(parse_whole_number("11", 0, 10));
  EXPECT_FALSE(parse_whole_number("0", 1, 10));
}

}  // namespace
}  // namespace xbuf
