// SPDX-License-Identifier: MIT
#include "allocator/buffer_index.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <set>
#include <vector>

namespace xbuf {
namespace {

std::shared_ptr<buffer> make(buffer_id id) {
  return std::make_shared<buffer>(id, 1, 4096, 0, std::vector<placement>{placement::pageable()},
                                  false, false, "");
}

TEST(BufferIndexTest, FirstIdsCountFromOne) {
  buffer_index idx;
  EXPECT_EQ(idx.claim(), 1u);
  EXPECT_EQ(idx.claim(), 2u);
  EXPECT_EQ(idx.claim(), 3u);
}

TEST(BufferIndexTest, FindsWhatWasFilledAndNothingElse) {
  buffer_index idx;
  const buffer_id a = idx.claim();
  EXPECT_EQ(idx.find(a), nullptr) << "claimed, not filled";
  auto buf = make(a);
  idx.fill(a, buf);
  ASSERT_NE(idx.find(a), nullptr);
  EXPECT_EQ(idx.find(a)->get(), buf.get());
  EXPECT_EQ(idx.size(), 1u);
  EXPECT_EQ(idx.find(0), nullptr);
  EXPECT_EQ(idx.find(a + 1), nullptr) << "never issued";
  EXPECT_EQ(idx.find(a | (std::uint64_t{7} << 32)), nullptr) << "another generation of its slot";
}

// A freed slot is reused under a new id: the old id - a double free, an
// export record that outlived its buffer - reaches nothing.
TEST(BufferIndexTest, AReusedSlotNeverAnswersToItsOldId) {
  buffer_index idx;
  std::set<buffer_id> issued;
  buffer_id last = 0;
  for (int i = 0; i < 1000; ++i) {
    const buffer_id id = idx.claim();
    EXPECT_TRUE(issued.insert(id).second) << "id " << id << " issued twice";
    idx.fill(id, make(id));
    if (last != 0) {
      EXPECT_EQ(idx.find(last), nullptr);
      EXPECT_EQ(id & 0xffffffffu, last & 0xffffffffu) << "the freed slot is reused first";
    }
    idx.erase(id);
    EXPECT_EQ(idx.find(id), nullptr);
    idx.erase(id);  // a stale erase changes nothing
    last = id;
  }
  EXPECT_EQ(idx.size(), 0u);
}

TEST(BufferIndexTest, CancelledClaimsAreReusedAndStaleErasesIgnored) {
  buffer_index idx;
  const buffer_id a = idx.claim();
  const buffer_id b = idx.claim();
  idx.fill(b, make(b));
  idx.cancel(a);
  const buffer_id c = idx.claim();
  EXPECT_NE(c, a);
  EXPECT_EQ(c & 0xffffffffu, a & 0xffffffffu);
  idx.erase(a);  // stale: must not free c's slot
  idx.fill(c, make(c));
  EXPECT_NE(idx.find(c), nullptr);
  EXPECT_NE(idx.find(b), nullptr);
  EXPECT_EQ(idx.size(), 2u);
  std::set<buffer_id> seen;
  idx.for_each([&](buffer_id id, const std::shared_ptr<buffer>& buf) {
    EXPECT_EQ(buf->id, id);
    seen.insert(id);
  });
  EXPECT_EQ(seen, (std::set<buffer_id>{b, c}));
}

}  // namespace
}  // namespace xbuf
