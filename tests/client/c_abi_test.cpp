// SPDX-License-Identifier: MIT
//
// The C ABI's failure contract without a daemon: every failure is a
// negative errno (or NULL) plus a message in xbuf_last_error(), never a
// crash or an exception.
#include "client/xbuf_c.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <string>

namespace {

TEST(CAbiTest, ConnectToNoDaemonIsNullWithAMessage) {
  xbuf_client* c = xbuf_connect("/tmp/xbuf-c-abi-test-nobody-listens.sock", "t");
  EXPECT_EQ(c, nullptr);
  EXPECT_NE(std::string(xbuf_last_error()), "");
  xbuf_disconnect(c);  // NULL is fine
}

TEST(CAbiTest, NullArgumentsAreInvalidArgument) {
  std::uint64_t b = 0;
  int fd = -1;
  EXPECT_EQ(xbuf_alloc(nullptr, 4096, 0, &b), -EINVAL);
  EXPECT_NE(std::string(xbuf_last_error()).find("xbuf_alloc"), std::string::npos) << xbuf_last_error();
  EXPECT_EQ(xbuf_free(nullptr, 1), -EINVAL);
  EXPECT_NE(std::string(xbuf_last_error()).find("xbuf_free"), std::string::npos) << xbuf_last_error();
  EXPECT_EQ(xbuf_export_fd(nullptr, 1, &fd, nullptr, nullptr), -EINVAL);
  EXPECT_EQ(fd, -1);
}

TEST(CAbiTest, TorchShapeRefusesBadSizesAndIgnoresForeignPointers) {
  EXPECT_EQ(xbuf_torch_malloc(0, 0, nullptr), nullptr);
  EXPECT_NE(std::string(xbuf_last_error()).find("size 0"), std::string::npos) << xbuf_last_error();
  EXPECT_EQ(xbuf_torch_malloc(-5, 0, nullptr), nullptr);
  int not_ours = 0;
  xbuf_torch_free(&not_ours, sizeof not_ours, 0, nullptr);  // freeing never fails
  xbuf_torch_free(nullptr, 0, 0, nullptr);
}

}  // namespace
