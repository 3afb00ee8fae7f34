// SPDX-License-Identifier: MIT
#include "server/client_registry.hpp"

#include <utility>

namespace xbuf::server {

void client_registry::add(client_record record, cancel_hook cancel) {
  const owner_id owner = record.owner;
  xbuf::mutex_lock lock(mutex_);
  clients_[owner] = entry{std::move(record), std::move(cancel), {}};
}

bool client_registry::try_add(client_record record, cancel_hook cancel, std::size_t limit) {
  const owner_id owner = record.owner;
  xbuf::mutex_lock lock(mutex_);
  if (clients_.size() >= limit && !clients_.contains(owner)) return false;
  clients_[owner] = entry{std::move(record), std::move(cancel), {}};
  return true;
}

std::size_t client_registry::size() const {
  xbuf::mutex_lock lock(mutex_);
  return clients_.size();
}

void client_registry::set_name(owner_id owner, std::string name) {
  xbuf::mutex_lock lock(mutex_);
  if (auto it = clients_.find(owner); it != clients_.end()) it->second.record.name = std::move(name);
}

std::optional<client_record> client_registry::remove(owner_id owner) {
  xbuf::mutex_lock lock(mutex_);
  auto it = clients_.find(owner);
  if (it == clients_.end()) return std::nullopt;
  client_record r = std::move(it->second.record);
  clients_.erase(it);
  return r;
}

std::vector<client_record> client_registry::snapshot() const {
  xbuf::mutex_lock lock(mutex_);
  std::vector<client_record> out;
  out.reserve(clients_.size());
  for (const auto& [owner, e] : clients_) out.push_back(e.record);
  return out;
}

void client_registry::cancel_all() {
  std::vector<cancel_hook> hooks;
  {
    xbuf::mutex_lock lock(mutex_);
    for (const auto& [owner, e] : clients_) {
      if (e.cancel) hooks.push_back(e.cancel);
    }
  }
  for (auto& h : hooks) h();
}

void client_registry::set_events(owner_id owner, event_sink events) {
  xbuf::mutex_lock lock(mutex_);
  if (auto it = clients_.find(owner); it != clients_.end()) it->second.events = std::move(events);
}

void client_registry::post_to_all(const std::vector<std::uint8_t>& frame) const {
  std::vector<event_sink> sinks;
  {
    xbuf::mutex_lock lock(mutex_);
    for (const auto& [owner, e] : clients_) {
      if (e.events) sinks.push_back(e.events);
    }
  }
  for (auto& s : sinks) s(frame);
}

}  // namespace xbuf::server
