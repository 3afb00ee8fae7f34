// SPDX-License-Identifier: MIT
#include "client/top_command.hpp"

#include <curses.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <optional>
#include <string>

#include "client/cli_args.hpp"
#include "client/top_view.hpp"

namespace xbuf::client {

namespace {

constexpr const char* usage_line = "usage: xbuf top [--socket PATH] [--interval SECS] [--seconds N]";

void print_help() {
  std::printf("%s\n\n"
              "A live view of xbufd, redrawn every --interval seconds (1..3600, default 1):\n"
              "its domains (used of capacity, peak, exported), its clients, and what changed\n"
              "between refreshes (allocations, evictions, moves, ...). q quits; --seconds N\n"
              "quits by itself after N seconds (scripts, the README's main job).\n"
              "A tenant sees its own clients and per-domain totals, the operator everything.\n\n"
              "%s\n%s",
              usage_line, cli::socket_help, cli::exit_codes_help);
}

std::string clock_now() {
  char when[16];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(when, sizeof when, "%H:%M:%S", &tm);
  return when;
}

// Restores the terminal when the loop ends, however it ends.
struct screen {
  screen() {
    initscr();
    cbreak();
    noecho();
    curs_set(0);
    keypad(stdscr, TRUE);
  }
  ~screen() { endwin(); }
  screen(const screen&) = delete;
  screen& operator=(const screen&) = delete;
};

}  // namespace

int top_main(std::span<char*> args) {
  cli::arg_reader r("xbuf top", args);
  std::optional<std::string> socket;
  std::uint64_t interval = 1;
  std::optional<std::uint64_t> seconds;
  while (r.next()) {
    if (r.is("--socket")) {
      socket = r.value();
      if (!socket) return cli::exit_usage;
    } else if (r.is("--interval")) {
      auto n = r.number(1, 3600);
      if (!n) return cli::exit_usage;
      interval = *n;
    } else if (r.is("--seconds")) {
      if (!(seconds = r.number(1, 86'400))) return cli::exit_usage;
    } else if (r.is("--help") || r.is("-h")) {
      print_help();
      return cli::exit_ok;
    } else {
      return r.unknown(usage_line);
    }
  }
  const std::string path = cli::socket_path(socket);
  auto c = cli::connect("xbuf top", path, "xbuf-top");
  if (!c) return cli::exit_runtime;
  top_history history;
  std::string failure;
  using clock = std::chrono::steady_clock;
  const clock::time_point until =
      seconds ? clock::now() + std::chrono::seconds(*seconds) : clock::time_point::max();
  {
    screen scr;
    timeout(static_cast<int>(interval * 1000));
    for (;;) {
      auto s = c->stats();
      if (!s) {
        failure = s.err().describe();
        break;
      }
      note_refresh(history, *s, clock_now());
      erase();
      const auto lines = render_top(*s, history, path, static_cast<std::size_t>(COLS > 1 ? COLS - 1 : 1));
      for (std::size_t i = 0; i < lines.size() && static_cast<int>(i) < LINES; ++i) {
        mvaddstr(static_cast<int>(i), 0, lines[i].c_str());
      }
      refresh();
      const int key = getch();  // waits up to the interval; a resize wakes it too
      if (key == 'q' || key == 'Q') break;
      if (clock::now() >= until) break;
    }
  }
  if (!failure.empty()) {
    std::fprintf(stderr, "xbuf top: %s\n", failure.c_str());
    return cli::exit_runtime;
  }
  return cli::exit_ok;
}

}  // namespace xbuf::client
