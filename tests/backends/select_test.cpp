// SPDX-License-Identifier: MIT
#include "backends/select.hpp"

#include <gtest/gtest.h>

namespace xbuf {
namespace {

TEST(SelectBackendTest, ParsesTheFlagNamesAndRejectsOthers) {
  EXPECT_EQ(*parse_backend_choice("auto"), backend_choice::automatic);
  EXPECT_EQ(*parse_backend_choice("cuda"), backend_choice::cuda);
  EXPECT_EQ(*parse_backend_choice("hip"), backend_choice::hip);
  EXPECT_EQ(*parse_backend_choice("sim"), backend_choice::sim);
  auto bad = parse_backend_choice("opencl");
  ASSERT_EQ(bad.code(), errc::invalid_argument);
  EXPECT_NE(bad.err().message.find("'opencl'"), std::string::npos);
}

TEST(SelectBackendTest, AutomaticEndsOnAWorkingBackendWithNotesForTheRest) {
  auto s = select_backend({});
  ASSERT_TRUE(s) << s.err().describe();
  ASSERT_NE(s->chosen, nullptr);
  const auto name = s->chosen->name();
  if (name == "sim") {
    // Every GPU backend was tried and each left its reason.
    EXPECT_EQ(s->notes.size(), 2u);
    for (const auto& n : s->notes) EXPECT_NE(n.find("no_device"), std::string::npos) << n;
  } else {
    EXPECT_TRUE(name == "cuda" || name == "hip") << name;
  }
}

TEST(SelectBackendTest, ExplicitSimAlwaysWorks) {
  backend_selection_config c;
  c.choice = backend_choice::sim;
  auto s = select_backend(c);
  ASSERT_TRUE(s) << s.err().describe();
  EXPECT_EQ(s->chosen->name(), "sim");
  EXPECT_TRUE(s->notes.empty());
}

TEST(SelectBackendTest, ExplicitGpuChoiceFailsWithItsOwnReasonWhenAbsent) {
  for (auto choice : {backend_choice::cuda, backend_choice::hip}) {
    backend_selection_config c;
    c.choice = choice;
    auto s = select_backend(c);
    if (s) {
      EXPECT_EQ(s->chosen->name(), to_string(choice));
      continue;
    }
    if (!backend_built(choice)) {
      EXPECT_EQ(s.code(), errc::unsupported);
    } else {
      EXPECT_EQ(s.code(), errc::no_device) << s.err().describe();
      EXPECT_FALSE(s.err().message.empty());
    }
  }
}

}  // namespace
}  // namespace xbuf
