// SPDX-License-Identifier: MIT
#include "allocator/move_job.hpp"

#include <cerrno>

#include "core/fence_join.hpp"

namespace xbuf {

namespace {
// All moves share one fence context: their fences are ordered by nothing but
// their own completion, so each gets a unique seqno on it.
std::uint64_t move_context() {
  static const std::uint64_t context = fence::allocate_context();
  return context;
}
std::atomic<std::uint64_t> move_seqno{0};
}  // namespace

move_job::move_job(backend& be, memory_span dst, memory_span src, int retries,
                   std::function<void(int)> on_done)
    : backend_(be),
      dst_(std::move(dst)),
      src_(std::move(src)),
      retries_left_(retries),
      on_done_(std::move(on_done)),
      done_(fence::create(move_context(), move_seqno.fetch_add(1) + 1)) {}

fence_ptr move_job::start(backend& be, memory_span dst, memory_span src,
                          std::vector<fence_ptr> after, int retries,
                          std::function<void(int)> on_done) {
  std::shared_ptr<move_job> job(
      new move_job(be, std::move(dst), std::move(src), retries, std::move(on_done)));
  fence_ptr done = job->done_;
  when_all_signaled(std::move(after), [job](int) { job->issue(); });
  return done;
}

void move_job::issue() {
  auto copy = backend_.copy(dst_, src_);
  if (!copy) {
    finish(to_errno(copy.code()));
    return;
  }
  auto self = shared_from_this();
  auto id = (*copy)->add_callback([self](const fence& f) { self->copied(f.error()); });
  if (!id) copied((*copy)->error());
}

void move_job::copied(int error) {
  if (error != 0 && retries_left_ > 0) {
    --retries_left_;
    issue();
    return;
  }
  finish(error);
}

void move_job::finish(int error) {
  // on_done first: whoever waits for the move fence must already see what
  // the move's outcome recorded (e.g. the buffer marked lost).
  if (on_done_) on_done_(error);
  (void)done_->signal(error);
}

}  // namespace xbuf
