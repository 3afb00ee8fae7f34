// SPDX-License-Identifier: MIT
#include "core/fence_join.hpp"

#include <algorithm>
#include <atomic>
#include <memory>

namespace xbuf {

namespace {
// Shared by the callbacks of one join: counts the fences still pending.
struct countdown {
  std::atomic<std::size_t> remaining;
  std::atomic<int> first_error{0};
  std::function<void(int)> fn;

  void arrive(int error) {
    int expected = 0;
    if (error != 0) first_error.compare_exchange_strong(expected, error);
    if (remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) fn(first_error.load());
  }
};
}  // namespace

void when_all_signaled(std::vector<fence_ptr> fences, std::function<void(int)> fn) {
  std::erase(fences, nullptr);
  // One extra count held by this function, so fn cannot run before every
  // callback has been registered.
  auto state = std::make_shared<countdown>();
  state->remaining.store(fences.size() + 1);
  state->fn = std::move(fn);
  for (auto& f : fences) {
    auto id = f->add_callback([state](const fence& done) { state->arrive(done.error()); });
    if (!id) state->arrive(f->error());  // already signaled
  }
  state->arrive(0);
}

fence_ptr join(std::vector<fence_ptr> fences) {
  std::erase(fences, nullptr);
  if (fences.empty()) return fence::signaled();
  if (fences.size() == 1) return fences.front();
  auto joined = fence::create(fence::allocate_context(), 1);
  when_all_signaled(std::move(fences), [joined](int error) { (void)joined->signal(error); });
  return joined;
}

}  // namespace xbuf
