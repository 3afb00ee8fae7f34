// SPDX-License-Identifier: MIT
#include "allocator/move_job.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

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
    scrub(to_errno(copy.code()));
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
  scrub(error);
}

std::vector<memory_span> move_job::padding() const {
  const memory_block& b = *dst_.block;
  const auto& caps = backend_.caps();
  if (b.kind == memory_kind::device && !caps.export_fd) return {};
  std::size_t lo = 0;
  std::size_t hi = b.size;
  if (detaches_ranges(caps, b.kind)) {
    // An export reaches the span's granules only.
    const std::size_t g =
        b.kind == memory_kind::device ? std::max<std::size_t>(caps.device_granularity, 4096) : 4096;
    lo = dst_.offset / g * g;
    hi = std::min(b.size, (dst_.offset + dst_.size + g - 1) / g * g);
  }
  std::vector<memory_span> out;
  if (lo < dst_.offset) out.push_back({dst_.block, lo, dst_.offset - lo});
  const std::size_t end = dst_.offset + dst_.size;
  if (end < hi) out.push_back({dst_.block, end, hi - end});
  return out;
}

void move_job::scrub(int error) {
  std::vector<memory_span> zero = padding();
  if (error != 0) zero.push_back(dst_);
  if (zero.empty()) {
    finish(error);
    return;
  }
  std::vector<fence_ptr> fills;
  for (const auto& z : zero) {
    auto f = backend_.fill(z, 0);
    if (f) {
      fills.push_back(std::move(*f));
      continue;
    }
    // No fill here: the CPU does it where it can reach the block; a
    // destination nobody can zero is not handed to the buffer.
    if (z.block->host_ptr == nullptr) {
      finish(error != 0 ? error : to_errno(f.code()));
      return;
    }
    std::memset(static_cast<char*>(z.block->host_ptr) + z.offset, 0, z.size);
  }
  auto self = shared_from_this();
  when_all_signaled(std::move(fills), [self, zero = std::move(zero), error](int fill_error) {
    if (fill_error != 0) {
      // A failed fill (a device reset) leaves the bytes; the CPU tries.
      for (const auto& z : zero) {
        if (z.block->host_ptr == nullptr) {
          self->finish(error != 0 ? error : fill_error);
          return;
        }
        std::memset(static_cast<char*>(z.block->host_ptr) + z.offset, 0, z.size);
      }
    }
    self->finish(error);
  });
}

void move_job::finish(int error) {
  // on_done first: whoever waits for the move fence must already see what
  // the move's outcome recorded (e.g. the buffer marked lost).
  if (on_done_) on_done_(error);
  (void)done_->signal(error);
}

}  // namespace xbuf
