// SPDX-License-Identifier: MIT
#include "client/deferred_frees.hpp"

#include <utility>

namespace xbuf::client::detail {

status deferred_frees::defer(const std::shared_ptr<gpu::gpu_device>& dev, gpu::stream_t stream, void* ptr) {
  gpu::device_scope scope(*dev);
  if (auto s = scope.check("ordering a free after its stream"); !s) return s;
  auto e = dev->runtime->event_create(dev->ref);
  if (!e) return std::move(e).err();
  if (auto s = dev->runtime->event_record(dev->ref, *e, stream); !s) {
    dev->runtime->event_destroy(*e);
    return s;
  }
  pending_.push_back(entry{dev, *e, ptr});
  return ok();
}

std::vector<void*> deferred_frees::poll() {
  std::vector<void*> done;
  std::erase_if(pending_, [&](const entry& p) {
    if (!p.dev->runtime->event_query(p.event).has_value()) return false;
    gpu::device_scope scope(*p.dev);
    if (scope.ok()) p.dev->runtime->event_destroy(p.event);
    done.push_back(p.ptr);
    return true;
  });
  return done;
}

deferred_frees::~deferred_frees() {
  for (auto& p : pending_) {
    gpu::device_scope scope(*p.dev);
    if (scope.ok()) p.dev->runtime->event_destroy(p.event);
  }
}

}  // namespace xbuf::client::detail
