// SPDX-License-Identifier: MIT
#include "client/trace_command.hpp"

#include <cerrno>
#include <cstdio>
#include <fstream>
#include <optional>
#include <string>

#include "client/cli_args.hpp"
#include "client/trace_format.hpp"
#include "core/errno_text.hpp"

namespace xbuf::client {

namespace {

constexpr const char* usage_line = "usage: xbuf trace [--socket PATH] [--out FILE.json] [--html FILE.html]";

void print_help() {
  std::printf("%s\n\n"
              "xbufd's memory timeline - every allocation, free, eviction, promotion and migration\n"
              "its event ring still holds that you may see (a tenant: its own clients') - written as\n"
              "Chrome trace-event JSON (--out; open it in Perfetto or chrome://tracing) and/or as a\n"
              "self-contained HTML page plotting each domain's occupancy stacked by client, with the\n"
              "moves marked (--html). At least one of the two.\n\n"
              "%s\n%s",
              usage_line, cli::socket_help, cli::exit_codes_help);
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) {
    std::fprintf(stderr, "xbuf trace: cannot write %s: %s\n", path.c_str(), errno_text(errno).c_str());
    return false;
  }
  return true;
}

}  // namespace

int trace_main(std::span<char*> args) {
  cli::arg_reader r("xbuf trace", args);
  std::optional<std::string> socket, out, html;
  while (r.next()) {
    if (r.is("--socket")) {
      if (!(socket = r.value())) return cli::exit_usage;
    } else if (r.is("--out")) {
      if (!(out = r.value())) return cli::exit_usage;
    } else if (r.is("--html")) {
      if (!(html = r.value())) return cli::exit_usage;
    } else if (r.is("--help") || r.is("-h")) {
      print_help();
      return cli::exit_ok;
    } else {
      return r.unknown(usage_line);
    }
  }
  if (!out && !html) {
    std::fprintf(stderr, "xbuf trace: nothing to write: give --out FILE.json and/or --html FILE.html\n%s\n",
                 usage_line);
    return cli::exit_usage;
  }
  const std::string path = cli::socket_path(socket);
  auto c = cli::connect("xbuf trace", path, "xbuf-trace");
  if (!c) return cli::exit_runtime;
  auto s = c->stats();
  if (!s) {
    std::fprintf(stderr, "xbuf trace: %s\n", s.err().describe().c_str());
    return cli::exit_runtime;
  }
  trace_input in;
  in.backend = s->backend;
  in.domains = s->domains;
  for (const auto& cl : s->clients) in.names[cl.owner] = cl.name;
  std::uint64_t since = 0;
  for (;;) {
    auto page = c->trace(since);
    if (!page) {
      std::fprintf(stderr, "xbuf trace: %s\n", page.err().describe().c_str());
      return cli::exit_runtime;
    }
    in.dropped += page->dropped;
    in.events.insert(in.events.end(), page->events.begin(), page->events.end());
    if (page->next == since) break;  // nothing newer
    since = page->next;
  }
  if (out && !write_file(*out, to_chrome_trace(in))) return cli::exit_runtime;
  if (html && !write_file(*html, to_html(in))) return cli::exit_runtime;
  std::printf("xbuf trace: %zu events%s%s%s%s\n", in.events.size(), out ? ", " : "", out ? out->c_str() : "",
              html ? ", " : "", html ? html->c_str() : "");
  return cli::exit_ok;
}

}  // namespace xbuf::client
