// SPDX-License-Identifier: MIT
//
// shell.hpp - runs a shell command for a test (popen): what it printed on
// stdout and how it exited. Redirect stderr in the command ("2>&1") to
// read it too.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace xbuf::test {

struct shell_result {
  std::string out;
  int rc = -1;  // the exit status; -1 when killed by a signal or not started
};

inline shell_result run_shell(const std::string& cmd) {
  shell_result r;
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    r.out = "popen failed";
    return r;
  }
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace xbuf::test
