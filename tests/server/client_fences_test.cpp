// SPDX-License-Identifier: MIT
#include "server/client_fences.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace xbuf::server {
namespace {

struct counting_sink {
  std::shared_ptr<std::atomic<int>> events = std::make_shared<std::atomic<int>>(0);
  event_sink sink() {
    return [n = events](std::vector<std::uint8_t>) { n->fetch_add(1); };
  }
};

// arm() reports the fences tracked since the last arm() - each once, however
// many arms follow - and none tracked before it that already signaled.
TEST(ClientFencesTest, EachTrackedFenceIsArmedOnceByTheNextArm) {
  counting_sink c;
  client_fences table(c.sink());
  std::vector<fence_ptr> fences;
  for (int i = 0; i < 100; ++i) {
    fences.push_back(table.make_client_fence());
    (void)table.track(fences.back(), true);
    table.arm();  // a reply after each: earlier fences must not be armed again
  }
  for (auto& f : fences) ASSERT_TRUE(f->signal());
  EXPECT_EQ(c.events->load(), 100);

  auto early = table.make_client_fence();
  (void)table.track(early, true);
  ASSERT_TRUE(early->signal());  // before its reply went out: no report
  table.arm();
  EXPECT_EQ(c.events->load(), 100);
}

TEST(ClientFencesTest, NothingIsArmedAfterForgetAll) {
  counting_sink c;
  client_fences table(c.sink());
  auto f = table.make_client_fence();
  (void)table.track(f, true);
  table.forget_all();
  table.arm();
  ASSERT_TRUE(f->signal());
  EXPECT_EQ(c.events->load(), 0);
}

}  // namespace
}  // namespace xbuf::server
