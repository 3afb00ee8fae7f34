// SPDX-License-Identifier: MIT
//
// server/config_file: real TOML files in a private directory, read into
// the (key, value text) pairs xbufd's flag parsers take, and every way a
// file can be wrong named with its file, line and key. What the values
// then do in the daemon is tests/integration/config_file_test.cpp.
#include "server/config_file.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace xbuf::server {
namespace {

using kind = config_kind;

const std::vector<config_key> keys = {
    {"socket", kind::text},   {"socket-mode", kind::mode},      {"max-connections", kind::number},
    {"pinned", kind::number}, {"frame-timeout", kind::seconds}, {"quiet", kind::boolean},
};

class ConfigFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char d[] = "/tmp/xbuf-config-XXXXXX";
    ASSERT_NE(::mkdtemp(d), nullptr);
    dir_ = d;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& text) {
    const std::string path = dir_ + "/xbufd.toml";
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

bool has(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

TEST_F(ConfigFileTest, EveryKindBecomesTheTextItsFlagWouldTakeInFileOrder) {
  const std::string path = write(
      "# a comment\n"
      "socket = \"/run/x.sock\"\n"
      "pinned = \"512M\"\n"
      "max-connections = 64\n"
      "frame-timeout = 1.5\n"
      "socket-mode = \"0640\"\n"
      "quiet = true\n");
  auto r = read_config_file(path, keys);
  ASSERT_TRUE(r) << r.err().describe();
  const std::vector<std::pair<std::string, std::string>> want = {
      {"socket", "/run/x.sock"}, {"pinned", "512M"},      {"max-connections", "64"},
      {"frame-timeout", "1.5"},  {"socket-mode", "0640"}, {"quiet", ""}};
  ASSERT_EQ(r->size(), want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ((*r)[i].key, want[i].first);
    EXPECT_EQ((*r)[i].value, want[i].second) << want[i].first;
    EXPECT_EQ((*r)[i].line, i + 2) << want[i].first;
  }
}

TEST_F(ConfigFileTest, SecondsTakeIntegersAndStringsAndFalseSwitchesAreLeftOut) {
  auto r = read_config_file(write("frame-timeout = 10\nquiet = false\npinned = 1048576\n"), keys);
  ASSERT_TRUE(r) << r.err().describe();
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].value, "10");
  EXPECT_EQ((*r)[1].value, "1048576");
  auto s = read_config_file(write("frame-timeout = \"0.25\"\n"), keys);
  ASSERT_TRUE(s) << s.err().describe();
  EXPECT_EQ((*s)[0].value, "0.25");
}

// The value's own check is the flag parser's; a negative integer is passed
// on as "-1" so that parser refuses it by the key's name.
TEST_F(ConfigFileTest, ANegativeIntegerIsPassedOnForTheFlagParserToRefuse) {
  auto r = read_config_file(write("max-connections = -1\n"), keys);
  ASSERT_TRUE(r) << r.err().describe();
  EXPECT_EQ((*r)[0].value, "-1");
}

TEST_F(ConfigFileTest, AnUnknownKeyNamesFileLineAndKey) {
  const std::string path = write("pinned = \"1M\"\n\nmax-conections = 3\n");
  auto r = read_config_file(path, keys);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_TRUE(has(r.err().message, path + ":3: max-conections: unknown key")) << r.err().message;
}

TEST_F(ConfigFileTest, AnUnderscoreSpellingIsUnknownAndHintsTheHyphenOne) {
  auto r = read_config_file(write("max_connections = 3\n"), keys);
  ASSERT_FALSE(r);
  EXPECT_TRUE(
      has(r.err().message, ":1: max_connections: unknown key (did you mean max-connections?"))
      << r.err().message;
}

TEST_F(ConfigFileTest, ASectionIsAnUnknownKey) {
  auto r = read_config_file(write("quiet = true\n[server]\nmax-connections = 3\n"), keys);
  ASSERT_FALSE(r);
  EXPECT_TRUE(has(r.err().message, ":2: server: unknown key (the file is one flat table"))
      << r.err().message;
}

TEST_F(ConfigFileTest, AValueOfTheWrongTypeNamesKeyAndLine) {
  struct bad_case {
    std::string text, where;
  };
  for (const auto& c : std::vector<bad_case>{
           {"\nquiet = \"yes\"\n", ":2: quiet: true or false is expected, not a string"},
           {"socket-mode = 0o660\n", ":1: socket-mode: an octal mode written as a string"},
           {"socket = 5\n", ":1: socket: a string is expected, not an integer"},
           {"pinned = 1.5\n", ":1: pinned: an integer or a string"},
           {"max-connections = [1, 2]\n", ":1: max-connections:"}}) {
    auto r = read_config_file(write(c.text), keys);
    ASSERT_FALSE(r) << c.text;
    EXPECT_EQ(r.code(), errc::invalid_argument) << c.text;
    EXPECT_TRUE(has(r.err().message, c.where)) << c.text << " -> " << r.err().message;
  }
}

TEST_F(ConfigFileTest, ASyntaxErrorNamesFileAndLine) {
  const std::string path = write("quiet = true\npinned = \"1M\n");
  auto r = read_config_file(path, keys);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::parse_error);
  EXPECT_TRUE(has(r.err().message, path + ":2: ")) << r.err().message;
}

TEST_F(ConfigFileTest, ADuplicateKeyIsASyntaxError) {
  auto r = read_config_file(write("pinned = 1\npinned = 2\n"), keys);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::parse_error);
  EXPECT_TRUE(has(r.err().message, ":2: ")) << r.err().message;
}

TEST_F(ConfigFileTest, AMissingFileIsNotFoundAndADirectoryIsAnIoError) {
  auto missing = read_config_file(dir_ + "/nope.toml", keys);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.code(), errc::not_found);
  EXPECT_TRUE(has(missing.err().message, dir_ + "/nope.toml")) << missing.err().message;
  auto directory = read_config_file(dir_, keys);
  ASSERT_FALSE(directory);
  EXPECT_EQ(directory.code(), errc::io_error);
}

TEST_F(ConfigFileTest, AnEmptyFileSetsNothing) {
  auto r = read_config_file(write(""), keys);
  ASSERT_TRUE(r) << r.err().describe();
  EXPECT_TRUE(r->empty());
}

}  // namespace
}  // namespace xbuf::server
