// SPDX-License-Identifier: MIT
//
// client/stats_json.hpp: a stats reply becomes valid JSON whatever its
// names hold, with every field where the header says.
#include "client/stats_json.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

#include "tests/common/json.hpp"

namespace xbuf {
namespace {

namespace json = test::json;

// Parses or fails the test, showing where the text went wrong.
json::value parsed(const std::string& text) {
  std::size_t where = 0;
  auto v = json::parse(text, &where);
  EXPECT_TRUE(v) << "invalid JSON at offset " << where << ": " << text;
  return v ? *v : json::value{};
}

std::string quoted_roundtrip(const std::string& s) {
  const auto v = parsed(client::json_quote(s));
  return v.as_string() != nullptr ? *v.as_string() : "<not a string>";
}

// The checker the other cases rely on says no where it must.
TEST(StatsJsonTest, TheReaderRejectsWhatIsNotJson) {
  for (const std::string bad : {"", "{", "{\"a\":1,}", "[1 2]", "01", "+1", "1.", "\"a\nb\"", "\"\xff\"",
                                "\"\\x\"", "\"\\ud800\"", "{} {}", "NaN", "{\"a\"}"}) {
    EXPECT_FALSE(json::parse(bad)) << bad;
  }
  EXPECT_TRUE(json::parse(" {\"a\":[1,-2.5e3,true,null,\"\\ud83d\\ude00\"]} "));
}

TEST(StatsJsonTest, QuoteEscapesQuotesBackslashesAndControlBytes) {
  const std::string nasty = std::string("a\"b\\c\n\t\r\b\f") + '\x01' + '\x1f' + std::string(1, '\0') + "z";
  const std::string q = client::json_quote(nasty);
  EXPECT_EQ(q.find('\n'), std::string::npos) << q;
  EXPECT_NE(q.find("\\u0001"), std::string::npos) << q;
  EXPECT_NE(q.find("\\u0000"), std::string::npos) << q;
  EXPECT_EQ(quoted_roundtrip(nasty), nasty);
}

TEST(StatsJsonTest, QuoteKeepsWellFormedUtf8) {
  const std::string text = "vram \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";  // é € 😀
  EXPECT_EQ(quoted_roundtrip(text), text);
}

TEST(StatsJsonTest, QuoteReplacesEachIllFormedUtf8ByteWithFffd) {
  const std::string fffd = "\xef\xbf\xbd";
  // A lone continuation byte, an overlong '/', a surrogate (U+D800), a
  // code point past U+10FFFF, a truncated sequence at the end.
  EXPECT_EQ(quoted_roundtrip("a\x80z"), "a" + fffd + "z");
  EXPECT_EQ(quoted_roundtrip("\xc0\xaf"), fffd + fffd);
  EXPECT_EQ(quoted_roundtrip("\xed\xa0\x80"), fffd + fffd + fffd);
  EXPECT_EQ(quoted_roundtrip("\xf4\x90\x80\x80"), fffd + fffd + fffd + fffd);
  EXPECT_EQ(quoted_roundtrip("ok\xe2\x82"), "ok" + fffd + fffd);
}

TEST(StatsJsonTest, EmptyReplyIsAnObjectWithEveryListEmpty) {
  const auto v = parsed(client::to_json(wire::stats_reply{}));
  ASSERT_NE(v.as_object(), nullptr);
  for (const char* list : {"domains", "clients", "buffers"}) {
    ASSERT_NE(v.find(list), nullptr) << list;
    ASSERT_NE(v.find(list)->as_array(), nullptr) << list;
    EXPECT_TRUE(v.find(list)->as_array()->empty()) << list;
  }
  ASSERT_NE(v.find("counters"), nullptr);
  ASSERT_NE(v.find("counters")->as_object(), nullptr);
  ASSERT_NE(v.find("tenant_view"), nullptr);
  EXPECT_EQ(*v.find("tenant_view")->as_bool(), false);
}

// The versioned shape is named before anything else, so a reader can
// check it first (stats_json.hpp, Rules).
TEST(StatsJsonTest, SchemaIsTheFirstKey) {
  const auto v = parsed(client::to_json(wire::stats_reply{}));
  ASSERT_NE(v.as_object(), nullptr);
  ASSERT_FALSE(v.as_object()->empty());
  EXPECT_EQ(v.as_object()->front().first, "schema");
  ASSERT_NE(v.find("schema")->as_string(), nullptr);
  EXPECT_EQ(*v.find("schema")->as_string(), "xbuf.stat/1");
  EXPECT_EQ(client::stats_schema, "xbuf.stat/1");
}

TEST(StatsJsonTest, EveryFieldIsThereWithItsValue) {
  wire::stats_reply s;
  s.backend = "sim";
  s.tenant_view = true;
  s.more_clients = 3;
  s.more_buffers = 4;
  s.buffers_truncated = true;
  s.domains.push_back({.name = "vram1", .where = placement::vram(1), .capacity = 1 << 20, .used = 4096,
                       .delayed_free_bytes = 8192, .buffers = 1, .peak_used = 65536});
  s.clients.push_back({.owner = 7, .pid = -1, .uid = 1000, .name = "job \"x\"", .bytes = 4096, .buffers = 1});
  s.buffers.push_back({.id = std::numeric_limits<std::uint64_t>::max(), .owner = 7, .name = "w\xff",
                       .size = 4096, .where = placement::pinned(), .attachments = 2, .pins = -1, .fences = 5,
                       .generation = 9, .lost = true});
  s.counters.push_back({"evictions", 11});
  s.counters.push_back({"moves", 12});

  const std::string text = client::to_json(s);
  EXPECT_EQ(text.find('\n'), std::string::npos) << "compact: one line";
  const auto v = parsed(text);
  EXPECT_EQ(*v.find("backend")->as_string(), "sim");
  EXPECT_EQ(*v.find("tenant_view")->as_bool(), true);
  EXPECT_EQ(v.find("more_clients")->as_number()->text, "3");
  EXPECT_EQ(v.find("more_buffers")->as_number()->text, "4");
  EXPECT_EQ(*v.find("buffers_truncated")->as_bool(), true);

  const json::value* d = v.find("domains")->at(0);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(*d->find("name")->as_string(), "vram1");
  EXPECT_EQ(*d->find("where")->find("name")->as_string(), "vram1");
  EXPECT_EQ(*d->find("where")->find("kind")->as_string(), "device");
  EXPECT_EQ(d->find("where")->find("device")->as_number()->text, "1");
  EXPECT_EQ(d->find("capacity")->as_number()->text, "1048576");
  EXPECT_EQ(d->find("used")->as_number()->text, "4096");
  EXPECT_EQ(d->find("delayed_free_bytes")->as_number()->text, "8192");
  EXPECT_EQ(d->find("peak_used")->as_number()->text, "65536");
  EXPECT_EQ(d->find("buffers")->as_number()->text, "1");

  const json::value* c = v.find("clients")->at(0);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->find("owner")->as_number()->text, "7");
  EXPECT_EQ(c->find("pid")->as_number()->text, "-1");
  EXPECT_EQ(c->find("uid")->as_number()->text, "1000");
  EXPECT_EQ(*c->find("name")->as_string(), "job \"x\"");
  EXPECT_EQ(c->find("bytes")->as_number()->text, "4096");

  const json::value* b = v.find("buffers")->at(0);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->find("id")->as_number()->text, "18446744073709551615") << "u64 written in full";
  EXPECT_EQ(*b->find("name")->as_string(), "w\xef\xbf\xbd");
  EXPECT_EQ(*b->find("where")->find("name")->as_string(), "pinned");
  EXPECT_EQ(*b->find("where")->find("kind")->as_string(), "host_pinned");
  EXPECT_EQ(b->find("where")->find("device")->as_number()->text, "-1");
  EXPECT_EQ(b->find("attachments")->as_number()->text, "2");
  EXPECT_EQ(b->find("pins")->as_number()->text, "-1");
  EXPECT_EQ(b->find("fences")->as_number()->text, "5");
  EXPECT_EQ(b->find("generation")->as_number()->text, "9");
  EXPECT_EQ(*b->find("lost")->as_bool(), true);

  const json::value* counters = v.find("counters");
  EXPECT_EQ(counters->find("evictions")->as_number()->text, "11");
  EXPECT_EQ(counters->find("moves")->as_number()->text, "12");
}

}  // namespace
}  // namespace xbuf
