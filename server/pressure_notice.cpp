// SPDX-License-Identifier: MIT
#include "server/pressure_notice.hpp"

#include "server/protocol.hpp"

namespace xbuf::server {

bool pressure_notice::report(const placement& where, std::uint64_t bytes) {
  const auto now = std::chrono::steady_clock::now();
  {
    xbuf::mutex_lock lock(mutex_);
    auto [it, fresh] = last_.try_emplace(to_string(where), now);
    if (!fresh && now - it->second < interval_) {
      ++suppressed_;
      return false;
    }
    it->second = now;
    ++sent_;
  }
  clients_.post_to_all(wire::encode_message(0, wire::memory_pressure_event{.where = where, .bytes = bytes}));
  return true;
}

std::uint64_t pressure_notice::sent() const {
  xbuf::mutex_lock lock(mutex_);
  return sent_;
}

std::uint64_t pressure_notice::suppressed() const {
  xbuf::mutex_lock lock(mutex_);
  return suppressed_;
}

}  // namespace xbuf::server
