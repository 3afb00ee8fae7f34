// SPDX-License-Identifier: MIT
//
// File descriptors a client sends xbufd (SCM_RIGHTS, for import) against
// the real daemon: an import without one is a named error; a client that
// sends more than its imports take is closed, the daemon's descriptor
// count comes back to where it was, and another client is not disturbed.
#include <dirent.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "client/allocator.hpp"
#include "client/remote_client.hpp"
#include "server/protocol.hpp"
#include "tests/integration/daemon_process.hpp"

namespace xbuf {
namespace {

using namespace std::chrono_literals;

std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  if (DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str())) {
    while (::readdir(d) != nullptr) ++n;
    ::closedir(d);
  }
  return n;
}

// Sends `bytes` with `fds` as one SCM_RIGHTS message.
bool send_with_fds(int sock, const std::vector<std::uint8_t>& bytes, const std::vector<int>& fds) {
  iovec iov{const_cast<std::uint8_t*>(bytes.data()), bytes.size()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size());
}

class FdPassingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = std::make_unique<test::scratch_daemon>(std::vector<std::string>{});
    ASSERT_TRUE(daemon_->up()) << "xbufd did not come up; log:\n" << daemon_->log();
  }
  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "xbufd log:\n%s\n", daemon_->log().c_str());
  }
  std::unique_ptr<test::scratch_daemon> daemon_;
};

TEST_F(FdPassingTest, AnImportWithoutAnFdIsANamedError) {
  const int sock = test::raw_connect(daemon_->socket());
  ASSERT_GE(sock, 0);
  auto out = wire::encode_message(1, wire::hello_request{.client_name = "no-fd"});
  const auto import = wire::encode_message(2, wire::import_request{});
  out.insert(out.end(), import.begin(), import.end());
  ASSERT_EQ(::write(sock, out.data(), out.size()), static_cast<ssize_t>(out.size()));
  wire::frame_parser parser(false);
  std::optional<wire::frame> reply;
  std::uint8_t buf[4096];
  for (int i = 0; i < 100 && !reply; ++i) {
    pollfd p{.fd = sock, .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 100) != 1) continue;
    const ssize_t n = ::read(sock, buf, sizeof buf);
    if (n <= 0) break;
    parser.feed(std::span<const std::uint8_t>(buf, static_cast<std::size_t>(n)));
    for (auto r = parser.next(); r.status == wire::parse_status::complete; r = parser.next()) {
      if (r.frame_.header.request_id == 2) reply = r.frame_;
    }
  }
  ::close(sock);
  ASSERT_TRUE(reply) << "no reply to the import";
  auto r = wire::decode_reply<wire::import_reply>(wire::msg_type::import_fd, *reply);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("no fd came with the request"), std::string::npos) << r.err().message;
}

TEST_F(FdPassingTest, AClientSendingUnaskedFdsIsClosedAndNothingLeaks) {
  auto bystander = client::connect_daemon(daemon_->socket(), "bystander");
  ASSERT_TRUE(bystander) << bystander.err().describe();
  auto kept = (*bystander)->alloc({.size = 4096, .placements = {placement::pageable()}, .name = "kept",
                                   .cpu_access = false, .no_evict = false, .alignment = 0});
  ASSERT_TRUE(kept);
  const std::size_t before = open_fds(daemon_->process().pid());

  const int sock = test::raw_connect(daemon_->socket());
  ASSERT_GE(sock, 0);
  std::vector<int> fds;
  for (int i = 0; i < 10; ++i) fds.push_back(::memfd_create("flood", MFD_CLOEXEC));
  const auto hello = wire::encode_message(1, wire::hello_request{.client_name = "flooder"});
  ASSERT_TRUE(send_with_fds(sock, hello, fds));
  for (int fd : fds) ::close(fd);
  // The daemon closes the connection: a read sees the end.
  pollfd p{.fd = sock, .events = POLLIN, .revents = 0};
  bool closed = false;
  for (int i = 0; i < 100 && !closed; ++i) {
    if (::poll(&p, 1, 100) == 1) {
      char buf[4096];
      closed = ::read(sock, buf, sizeof buf) <= 0;
    }
  }
  ::close(sock);
  EXPECT_TRUE(closed) << "the flooding client is still connected";
  EXPECT_TRUE(daemon_->process().wait_log("more file descriptors than its import requests take"));
  // Its descriptors went with it.
  std::size_t after = open_fds(daemon_->process().pid());
  for (int i = 0; i < 100 && after > before; ++i) {
    std::this_thread::sleep_for(20ms);
    after = open_fds(daemon_->process().pid());
  }
  EXPECT_LE(after, before);
  // And the bystander is served as before.
  auto again = (*bystander)->alloc({.size = 4096, .placements = {placement::pageable()}, .name = "again",
                                    .cpu_access = false, .no_evict = false, .alignment = 0});
  EXPECT_TRUE(again) << again.err().describe();
}

}  // namespace
}  // namespace xbuf
