// SPDX-License-Identifier: MIT
#include "client/demo_command.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "client/remote_client.hpp"
#include "server/protocol.hpp"

namespace xbuf::client {

int demo_main(std::span<char*> args) {
  std::string path = wire::default_socket_path();
  std::string name = "demo";
  int seconds = 30;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    const bool has_value = i + 1 < args.size();
    if (a == "--socket" && has_value) {
      path = args[++i];
    } else if (a == "--seconds" && has_value) {
      seconds = std::atoi(args[++i]);
    } else if (a == "--name" && has_value) {
      name = args[++i];
    } else {
      std::fprintf(stderr, "usage: xbuf demo [--socket PATH] [--seconds N] [--name NAME]\n");
      return 2;
    }
  }
  auto c = remote_client::connect(path, name);
  if (!c) {
    std::fprintf(stderr, "xbuf demo: %s\n", c.err().describe().c_str());
    return 1;
  }
  std::uint64_t notices = 0;
  c->on_move_notify([&](const auto&) { ++notices; });

  std::mt19937 rng(std::random_device{}());
  std::deque<buffer_id> live;
  std::uint64_t allocs = 0;
  std::uint64_t refused = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const int dev = static_cast<int>(rng() % 2);
    const std::uint64_t size = (1 + rng() % 8) * (1u << 20);
    auto id = c->alloc(size, {placement::vram(dev), placement::pinned(), placement::pageable()}, name);
    if (!id) {
      ++refused;
    } else {
      ++allocs;
      live.push_back(*id);
      if (rng() % 3 == 0) {
        if (auto a = c->attach(*id, dev, attach_mode::dynamic)) (void)c->map(*a);
      }
    }
    // Bring a random older buffer back, as a job would before using it.
    if (!live.empty()) (void)c->validate({live[rng() % live.size()]});
    while (live.size() > 24) {
      (void)c->free(live.front());
      live.pop_front();
    }
    (void)c->poll_events(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (auto id : live) (void)c->free(id);
  std::printf("xbuf demo: %llu allocations, %llu refused, %llu move_notify events\n",
              static_cast<unsigned long long>(allocs), static_cast<unsigned long long>(refused),
              static_cast<unsigned long long>(notices));
  return 0;
}

}  // namespace xbuf::client
