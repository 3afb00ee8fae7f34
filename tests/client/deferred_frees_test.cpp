// SPDX-License-Identifier: MIT
// client/deferred_frees over the fake GPU runtime (tests/backends), whose
// events stay "running" while hold_events is set: a free waits for the
// work its stream had queued, and comes back in order once it is done.
#include "client/deferred_frees.hpp"

#include <gtest/gtest.h>

#include <memory>

#include "tests/backends/fake_gpu_runtime.hpp"

namespace xbuf {
namespace {

class DeferredFreesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = gpu::open_device(test::make_fake_gpu_runtime(state_), 0, true);
    ASSERT_TRUE(d) << d.err().describe();
    dev_ = d->device;
  }
  std::shared_ptr<test::fake_gpu_state> state_ = std::make_shared<test::fake_gpu_state>();
  std::shared_ptr<gpu::gpu_device> dev_;
  int a_ = 0, b_ = 0;
};

TEST_F(DeferredFreesTest, AFreeWaitsForItsStreamAndFreesComeBackInOrder) {
  client::detail::deferred_frees frees;
  state_->hold_events = true;  // the stream's kernels still run
  ASSERT_TRUE(frees.defer(dev_, nullptr, &a_));
  ASSERT_TRUE(frees.defer(dev_, dev_->stream, &b_));
  EXPECT_TRUE(frees.poll().empty()) << "memory went back while its stream still had work queued";
  EXPECT_EQ(frees.pending(), 2u);
  state_->hold_events = false;  // the stream got there
  const auto done = frees.poll();
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[0], &a_);
  EXPECT_EQ(done[1], &b_);
  EXPECT_TRUE(frees.poll().empty()) << "each free comes back once";
  EXPECT_EQ(frees.pending(), 0u);
}

TEST_F(DeferredFreesTest, AStreamThatCannotBeOrderedOnSaysSoAndKeepsNothing) {
  client::detail::deferred_frees frees;
  state_->lost = true;  // the device cannot be made current
  auto s = frees.defer(dev_, nullptr, &a_);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.code(), errc::device_lost) << s.err().describe();
  EXPECT_EQ(frees.pending(), 0u) << "the caller frees it (after synchronizing) or keeps it";
  state_->lost = false;
}

}  // namespace
}  // namespace xbuf
