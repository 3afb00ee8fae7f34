// SPDX-License-Identifier: MIT
//
// bin_dir.hpp - where a test finds the binaries it starts (xbufd, the fd
// helper): $XBUF_BIN_DIR when set, else the build's bin directory
// (compiled in). The override is for binaries carried to another machine
// (scripts/device-check.sh), where the build's path does not exist.
#pragma once

#include <cstdlib>
#include <string>

namespace xbuf::test {

inline std::string bin_dir() {
  const char* e = std::getenv("XBUF_BIN_DIR");
  return e != nullptr && *e != '\0' ? std::string(e) : std::string(XBUF_BIN_DIR);
}

}  // namespace xbuf::test
