// SPDX-License-Identifier: MIT
#include "server/client_fences.hpp"

#include <algorithm>
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
  bool sweep = false;
  {
    xbuf::mutex_lock lock(mutex_);
    sweep = fences_.size() >= sweep_at_;
  }
  if (sweep) sweep_signaled();
  xbuf::mutex_lock lock(mutex_);
  const std::uint64_t id = next_id_++;
  fences_.emplace(id, tracked{.f = std::move(f), .client_made = client_made, .armed = false, .callback = {}});
  unarmed_.push_back(id);
  if (fences_.size() > peak_) peak_ = fences_.size();
  return id;
}

void client_fences::sweep_signaled() {
  // is_signaled() may poll a backend fence and run its callbacks, so the
  // fences are read from a snapshot, outside mutex_ (a leaf).
  std::vector<std::pair<std::uint64_t, fence_ptr>> all;
  {
    xbuf::mutex_lock lock(mutex_);
    all.reserve(fences_.size());
    for (const auto& [id, t] : fences_) all.emplace_back(id, t.f);
  }
  std::vector<std::uint64_t> done;
  for (const auto& [id, f] : all) {
    if (f->is_signaled()) done.push_back(id);
  }
  std::vector<tracked> gone;
  {
    xbuf::mutex_lock lock(mutex_);
    for (std::uint64_t id : done) {
      auto it = fences_.find(id);
      if (it == fences_.end()) continue;
      recent_[id] = entry{.fence = it->second.f, .client_made = it->second.client_made};
      recent_order_.push_back(id);
      gone.push_back(std::move(it->second));
      fences_.erase(it);
    }
    while (recent_order_.size() > recent_capacity) {
      recent_.erase(recent_order_.front());
      recent_order_.pop_front();
    }
    sweep_at_ = std::max(min_sweep_at, 2 * fences_.size());
  }
  // A signaled fence's report is running or done; removing the callback
  // waits for a running one, so forget_all() keeps its promise.
  for (auto& t : gone) {
    if (t.callback) t.f->remove_callback(*t.callback);
  }
}

std::size_t client_fences::size() const {
  xbuf::mutex_lock lock(mutex_);
  return fences_.size();
}

std::size_t client_fences::peak_size() const {
  xbuf::mutex_lock lock(mutex_);
  return peak_;
}

void client_fences::arm() {
  std::vector<std::pair<std::uint64_t, fence_ptr>> todo;
  {
    xbuf::mutex_lock lock(mutex_);
    for (std::uint64_t id : unarmed_) {
      auto it = fences_.find(id);
      if (it == fences_.end() || it->second.armed) continue;  // pruned or forgotten since
      it->second.armed = true;
      todo.emplace_back(id, it->second.f);
    }
    unarmed_.clear();
  }
  for (auto& [id, f] : todo) {
    auto cb = f->add_callback([events = events_, fid = id](const fence& done) {
      post_event(events, wire::fence_signaled_event{.fence = fid, .error = done.error()});
    });
    if (!cb) continue;  // signaled already: wait() reports it
    bool still_tracked = false;
    {
      xbuf::mutex_lock lock(mutex_);
      if (auto it = fences_.find(id); it != fences_.end()) {
        it->second.callback = *cb;
        still_tracked = true;
      }
    }
    // Pruned meanwhile (it signaled): nobody else would remove the callback.
    if (!still_tracked) f->remove_callback(*cb);
  }
}

std::optional<client_fences::entry> client_fences::find(std::uint64_t id) const {
  xbuf::mutex_lock lock(mutex_);
  if (auto it = fences_.find(id); it != fences_.end()) {
    return entry{.fence = it->second.f, .client_made = it->second.client_made};
  }
  if (auto it = recent_.find(id); it != recent_.end()) return it->second;
  return std::nullopt;
}

void client_fences::forget_all() {
  std::map<std::uint64_t, tracked> gone;
  {
    xbuf::mutex_lock lock(mutex_);
    gone.swap(fences_);
    unarmed_.clear();
    recent_.clear();
    recent_order_.clear();
  }
  for (auto& [id, t] : gone) {
    if (t.callback) t.f->remove_callback(*t.callback);
  }
}

}  // namespace xbuf::server
