// SPDX-License-Identifier: MIT
#include "client/demo_command.hpp"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "client/cli_args.hpp"
#include "client/remote_client.hpp"
#include "server/protocol.hpp"

namespace xbuf::client {

namespace {

constexpr const char* usage_line = "usage: xbuf demo [--socket PATH] [--seconds N] [--name NAME]";
constexpr std::uint64_t default_seconds = 30;
constexpr std::size_t max_live = 24;  // buffers held at once; the oldest past it is released

void print_help() {
  std::printf(
      "%s\n"
      "A job that keeps xbufd busy, to watch: allocates 1-8 MiB buffers that prefer\n"
      "VRAM, validates older ones, attaches and maps one in three, and releases the\n"
      "oldest (unmap, detach, free) past %zu held. Ends with one line: allocations,\n"
      "refused allocations, attachments, move_notify events.\n\n"
      "%s"
      "  --seconds N     how long it runs, 1..86400 (default %llu)\n"
      "  --name NAME     its client name in xbufd and its buffers' name (default demo)\n"
      "  -h, --help      this text\n\n"
      "%s",
      usage_line, max_live, cli::socket_help, static_cast<unsigned long long>(default_seconds),
      cli::exit_codes_help);
}

// One buffer the demo holds, with its importer when it has one.
struct held_buffer {
  buffer_id id = 0;
  std::optional<attachment_id> attachment;
  bool mapped = false;
};

// What the run did, for the summary line.
struct tally {
  std::uint64_t allocations = 0;
  std::uint64_t refused = 0;
  std::uint64_t attached = 0;
  std::uint64_t detached = 0;
  std::uint64_t notices = 0;
  std::optional<std::string> first_refusal;
  std::optional<std::string> first_release_error;
};

// Unmap, detach, free - the importer's order, so nothing outlives its
// owner's row. The first failure is kept for the exit status.
void release(remote_client& c, const held_buffer& b, tally& t) {
  auto keep = [&](const status& st) {
    if (!st && !t.first_release_error) t.first_release_error = st.err().describe();
  };
  if (b.attachment) {
    if (b.mapped) keep(c.unmap(*b.attachment));
    const status d = c.detach(*b.attachment);
    if (d) ++t.detached;
    keep(d);
  }
  keep(c.free(b.id));
}

}  // namespace

int demo_main(std::span<char*> args) {
  cli::arg_reader r("xbuf demo", args);
  std::optional<std::string> socket;
  std::string name = "demo";
  std::uint64_t seconds = default_seconds;
  while (r.next()) {
    if (r.is("--socket")) {
      socket = r.value();
      if (!socket) return cli::exit_usage;
    } else if (r.is("--seconds")) {
      auto n = r.number(1, 86'400);
      if (!n) return cli::exit_usage;
      seconds = *n;
    } else if (r.is("--name")) {
      auto v = r.value();
      if (!v) return cli::exit_usage;
      name = *v;
    } else if (r.is("--help") || r.is("-h")) {
      print_help();
      return cli::exit_ok;
    } else {
      return r.unknown(usage_line);
    }
  }
  auto c = cli::connect("xbuf demo", cli::socket_path(socket), name);
  if (!c) return cli::exit_runtime;
  tally t;
  c->on_move_notify([&](const auto&) { ++t.notices; });

  std::mt19937 rng(std::random_device{}());
  std::deque<held_buffer> live;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const int dev = static_cast<int>(rng() % 2);
    const std::uint64_t size = (1 + rng() % 8) * (1u << 20);
    auto id =
        c->alloc(size, {placement::vram(dev), placement::pinned(), placement::pageable()}, name);
    if (!id) {
      ++t.refused;
      if (!t.first_refusal) t.first_refusal = id.err().describe();
    } else {
      ++t.allocations;
      held_buffer b{.id = *id, .attachment = std::nullopt, .mapped = false};
      if (rng() % 3 == 0) {
        if (auto a = c->attach(*id, dev, attach_mode::dynamic)) {
          ++t.attached;
          b.attachment = *a;
          b.mapped = static_cast<bool>(c->map(*a));
        }
      }
      live.push_back(b);
    }
    // Bring a random older buffer back, as a job would before using it.
    if (!live.empty()) (void)c->validate({live[rng() % live.size()].id});
    while (live.size() > max_live) {
      release(*c, live.front(), t);
      live.pop_front();
    }
    (void)c->poll_events(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (const auto& b : live) release(*c, b, t);
  live.clear();
  std::printf(
      "xbuf demo: %llu allocations, %llu refused, %llu attached and %llu detached, %llu "
      "move_notify events\n",
      static_cast<unsigned long long>(t.allocations), static_cast<unsigned long long>(t.refused),
      static_cast<unsigned long long>(t.attached), static_cast<unsigned long long>(t.detached),
      static_cast<unsigned long long>(t.notices));
  if (t.first_refusal)
    std::fprintf(stderr, "xbuf demo: first refusal: %s\n", t.first_refusal->c_str());
  if (t.first_release_error) {
    std::fprintf(stderr, "xbuf demo: release failed: %s\n", t.first_release_error->c_str());
    return cli::exit_runtime;
  }
  return cli::exit_ok;
}

}  // namespace xbuf::client
