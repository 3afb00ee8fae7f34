// SPDX-License-Identifier: MIT
#include "server/client_fences.hpp"

#include <utility>
#include <vector>

namespace xbuf::server {

client_fences::client_fences(event_sink events)
    : events_(std::move(events)), context_(fence::allocate_context()) {}

client_fences::~client_fences() { forget_all(); }

fence_ptr client_fences::make_client_fence() {
  std::uint64_t seqno = 0;
  {
    xbuf::mutex_lock lock(mutex_);
    seqno = ++seqno_;
  }
  return fence::create(context_, seqno);
}

std::uint64_t client_fences::track(fence_ptr f, bool client_made) {
  xbuf::mutex_lock lock(mutex_);
  const std::uint64_t id = next_id_++;
  fences_.emplace(id, tracked{.f = std::move(f), .client_made = client_made, .armed = false, .callback = {}});
  return id;
}

void client_fences::arm() {
  std::vector<std::pair<std::uint64_t, fence_ptr>> todo;
  {
    xbuf::mutex_lock lock(mutex_);
    for (auto& [id, t] : fences_) {
      if (t.armed) continue;
      t.armed = true;
      todo.emplace_back(id, t.f);
    }
  }
  for (auto& [id, f] : todo) {
    auto cb = f->add_callback([events = events_, fid = id](const fence& done) {
      post_event(events, wire::fence_signaled_event{.fence = fid, .error = done.error()});
    });
    if (!cb) continue;  // signaled already: wait() reports it
    xbuf::mutex_lock lock(mutex_);
    if (auto it = fences_.find(id); it != fences_.end()) it->second.callback = *cb;
  }
}

std::optional<client_fences::entry> client_fences::find(std::uint64_t id) const {
  xbuf::mutex_lock lock(mutex_);
  auto it = fences_.find(id);
  if (it == fences_.end()) return std::nullopt;
  return entry{.fence = it->second.f, .client_made = it->second.client_made};
}

void client_fences::forget_all() {
  std::map<std::uint64_t, tracked> gone;
  {
    xbuf::mutex_lock lock(mutex_);
    gone.swap(fences_);
  }
  for (auto& [id, t] : gone) {
    if (t.callback) t.f->remove_callback(*t.callback);
  }
}

}  // namespace xbuf::server
