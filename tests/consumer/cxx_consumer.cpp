// SPDX-License-Identifier: MIT
//
// cxx_consumer.cpp - the installed libxbuf from a C++ program.
//
// Overview
//   Checks what a C++ user gets from find_package(xbuf): C++20 switched on
//   by xbuf::xbuf itself (this project sets no standard); the C++ interface
//   (client/allocator.hpp) linked through the .so's exports - both
//   factories, the allocator's virtual destructor, xbuf::error's
//   out-of-line describe(); and the C ABI callable from C++ (its extern "C"
//   block, no mangled xbuf_* names). TODO(lead): allocate, map and use a
//   buffer of the embedded allocator here.
//
// Rules
//   - Includes only the installed headers, as <client/...>.
//   - Prints "FAIL: ..." and exits 1 on a broken expectation.
#include <client/allocator.hpp>
#include <client/xbuf_c.h>

#include <cerrno>
#include <cstdio>
#include <span>
#include <string>
#include <string_view>

static_assert(__cplusplus >= 202002L, "xbuf::xbuf must bring C++20 (INTERFACE cxx_std_20)");

namespace {

int failures = 0;

void expect(bool ok, std::string_view what) {
  if (!ok) {
    std::fprintf(stderr, "FAIL: %.*s (xbuf_last_error: \"%s\")\n", static_cast<int>(what.size()),
                 what.data(), xbuf_last_error());
    ++failures;
  }
}

}  // namespace

int main() {
  const std::string path = "/nonexistent-xbuf-consumer-dir/xbufd.sock";

  // The C++ interface: no daemon there, so an error that names the socket.
  auto d = xbuf::client::connect_daemon(path, "xbuf-cxx-consumer");
  expect(!d, "connect_daemon to a missing socket fails");
  if (!d) {
    expect(d.err().describe().find(path) != std::string::npos, "connect_daemon's error names the socket path");
  }
  // In-process on the sim backend: opens without a GPU or a daemon, and
  // closes through the allocator's virtual destructor.
  {
    auto e = xbuf::client::open_embedded({.backend = "sim"});
    expect(e && *e != nullptr, "open_embedded on the sim backend");
    if (!e) std::fprintf(stderr, "  open_embedded: %s\n", e.err().describe().c_str());
  }
  xbuf_client* c = xbuf_connect(path.c_str(), "xbuf-cxx-consumer");
  expect(c == nullptr, "xbuf_connect to a missing socket returns nullptr");
  expect(std::string_view(xbuf_last_error()).find(path) != std::string_view::npos,
         "xbuf_last_error names the socket path");
  xbuf_disconnect(c);

  // Every null-client call fails with -EINVAL and names itself.
  const std::string_view names[] = {"xbuf_free", "xbuf_export_fd"};
  int fd = -1;
  const int rcs[] = {xbuf_free(nullptr, 1), xbuf_export_fd(nullptr, 1, &fd, nullptr, nullptr)};
  for (std::size_t i = 0; i < std::span(names).size(); ++i) {
    expect(rcs[i] == -EINVAL, names[i]);
  }
  expect(fd == -1, "xbuf_export_fd leaves *out_fd alone on failure");

  if (failures != 0) return 1;
  std::printf("cxx_consumer: ok\n");
  return 0;
}
