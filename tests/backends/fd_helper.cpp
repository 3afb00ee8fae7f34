// SPDX-License-Identifier: MIT
//
// fd_helper.cpp - the second process of the cross-process export/import tests.
//
// Usage: xbuf_backend_fd_helper --backend NAME --socket FD
// Receives one fd_request with the exported fd attached (SCM_RIGHTS), imports
// it into its own instance of backend NAME, checks that the range holds what
// the parent wrote (checksum), then overwrites it with fill_random(write_seed)
// and replies. Everything goes through the backend (copies to and from a host
// block), so it works for device memory the CPU cannot reach as well.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "tests/backends/backend_factories.hpp"
#include "tests/backends/backend_test_util.hpp"

namespace {

using namespace xbuf;

std::string run(const std::string& backend_name, int sock) {
  test::fd_request req;
  int fd = -1;
  if (!test::receive_with_fd(sock, req, fd)) return "no request arrived on the socket";
  if (fd < 0) return "the request carried no fd";
  auto made = test::create_test_backend(backend_name);
  if (!made) {
    ::close(fd);
    return "cannot create backend: " + made.err().describe();
  }
  auto& b = *made.value();
  exported_memory exp;
  exp.fd = fd;
  exp.offset = req.offset;
  exp.size = req.size;
  exp.kind = static_cast<memory_kind>(req.kind);
  auto imported = b.import_fd(exp, req.device);
  if (!imported) return "import_fd: " + imported.err().describe();
  auto staging = b.allocate_host(req.size, false);
  if (!staging) return "allocate_host: " + staging.err().describe();
  const memory_span remote{*imported, 0, req.size};
  const memory_span local{*staging, 0, req.size};

  auto in = b.copy(local, remote);
  if (!in) return "copy in: " + in.err().describe();
  if (auto w = (*in)->wait(std::chrono::seconds(60)); !w) return "copy in: " + w.err().describe();
  if ((*in)->error() != 0) return "copy in failed with " + std::to_string((*in)->error());
  const auto got = test::checksum((*staging)->host_ptr, req.size);
  if (got != req.expect_checksum) {
    return "imported memory has checksum " + std::to_string(got) + ", the parent wrote " +
           std::to_string(req.expect_checksum);
  }

  test::fill_random((*staging)->host_ptr, req.size, req.write_seed);
  auto out = b.copy(remote, local);
  if (!out) return "copy out: " + out.err().describe();
  if (auto w = (*out)->wait(std::chrono::seconds(60)); !w) return "copy out: " + w.err().describe();
  if ((*out)->error() != 0) return "copy out failed with " + std::to_string((*out)->error());
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  std::string backend_name;
  int sock = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--backend") backend_name = argv[i + 1];
    if (flag == "--socket") sock = std::atoi(argv[i + 1]);
  }
  if (backend_name.empty() || sock < 0) {
    std::fprintf(stderr, "usage: %s --backend NAME --socket FD\n", argv[0]);
    return 2;
  }
  const std::string problem = run(backend_name, sock);
  xbuf::test::fd_reply reply;
  reply.ok = problem.empty() ? 1 : 0;
  std::snprintf(reply.message, sizeof reply.message, "%s", problem.c_str());
  const bool sent = ::send(sock, &reply, sizeof reply, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof reply);
  return sent && problem.empty() ? 0 : 1;
}
