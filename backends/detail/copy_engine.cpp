// SPDX-License-Identifier: MIT
#include "backends/detail/copy_engine.hpp"

#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <system_error>

namespace xbuf::detail {

namespace {
// Unthrottled copies go in big chunks: small enough that reset() and shutdown
// stop a large copy quickly, large enough to cost nothing.
constexpr std::size_t unthrottled_chunk = std::size_t{8} << 20;
}  // namespace

copy_engine::copy_engine(copy_engine_config config)
    : config_(std::move(config)), context_(fence::allocate_context()) {}

result<std::unique_ptr<copy_engine>> copy_engine::create(copy_engine_config config) {
  std::unique_ptr<copy_engine> engine(new copy_engine(std::move(config)));
  try {
    engine->thread_ = std::thread([e = engine.get()] { e->run(); });
  } catch (const std::system_error& ex) {
    return fail(errc::io_error, engine->config_.name + ": cannot start its thread: " + ex.what());
  }
  // Thread names are at most 15 characters; best effort, for debuggers only.
  const std::string short_name = engine->config_.name.substr(0, 15);
  ::pthread_setname_np(engine->thread_.native_handle(), short_name.c_str());
  return engine;
}

copy_engine::~copy_engine() {
  {
    mutex_lock lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

copy_engine::job copy_engine::make_job(void* dst, const void* src, std::size_t bytes,
                                       std::span<const fence_ptr> wait_for, memory_block_ptr dst_keep,
                                       memory_block_ptr src_keep) {
  job j;
  j.dst = dst;
  j.src = src;
  j.bytes = bytes;
  j.wait_for.assign(wait_for.begin(), wait_for.end());
  j.dst_keep = std::move(dst_keep);
  j.src_keep = std::move(src_keep);
  return j;
}

result<fence_ptr> copy_engine::submit(void* dst, const void* src, std::size_t bytes,
                                      std::span<const fence_ptr> wait_for,
                                      memory_block_ptr dst_keep, memory_block_ptr src_keep) {
  return enqueue(make_job(dst, src, bytes, wait_for, std::move(dst_keep), std::move(src_keep)));
}

result<fence_ptr> copy_engine::submit_fill(void* dst, std::uint8_t value, std::size_t bytes,
                                           std::span<const fence_ptr> wait_for,
                                           memory_block_ptr dst_keep) {
  // A fill is a job without a source; execute() tells them apart.
  job j = make_job(dst, nullptr, bytes, wait_for, std::move(dst_keep), nullptr);
  j.fill_value = value;
  return enqueue(std::move(j));
}

result<fence_ptr> copy_engine::enqueue(job j) {
  // Looked at before the lock: is_signaled() may poll a backend fence and
  // run its callbacks, which may submit here.
  const bool may_inline = config_.inline_max_bytes != 0 && j.bytes <= config_.inline_max_bytes &&
                          config_.bytes_per_second <= 0 &&
                          std::all_of(j.wait_for.begin(), j.wait_for.end(),
                                      [](const fence_ptr& f) { return f->is_signaled(); });
  fence_ptr done;
  bool run_here = false;
  {
    mutex_lock lock(mutex_);
    if (stopping_) {
      return fail(errc::bad_state, config_.name + ": shutting down, " +
                                       (j.src != nullptr ? "copy" : "fill") + " not queued");
    }
    // Idle: every job submitted so far has signaled, and none runs.
    const bool idle = queue_.empty() && !inline_busy_ && signaled_through_ + 1 == next_seqno_;
    // The seqno is taken under the lock together with the queue position, so
    // queue order is seqno order.
    j.seqno = next_seqno_++;
    j.reset_generation = reset_generation_;
    j.extra_latency = extra_latency_;
    if (fail_next_ > 0) {
      --fail_next_;
      j.inject_failure = true;
    }
    j.done = std::make_shared<engine_fence>(context_, j.seqno, config_.driver_name);
    done = j.done;
    ++stats_.submitted;
    run_here = may_inline && idle && j.extra_latency == fence_clock::duration::zero();
    if (run_here) {
      inline_busy_ = true;
      ++stats_.inline_jobs;
    } else {
      queue_.push_back(std::move(j));
    }
  }
  if (run_here) {
    run_inline(j);
    return done;
  }
  wake_.notify_all();
  return done;
}

void copy_engine::run_inline(job& j) noexcept {
  int error = 0;
  for (const auto& f : j.wait_for) {
    if (const int e = f->error(); e != 0) error = e;
  }
  if (error == 0 && j.inject_failure) error = -EIO;
  // (No reset or stop can have come between enqueue's lock and here that
  // the check after the copy does not see.)
  if (error == 0) {
    if (j.src != nullptr) {
      std::memcpy(j.dst, j.src, j.bytes);
    } else {
      std::memset(j.dst, j.fill_value, j.bytes);
    }
  }
  j.dst_keep.reset();
  j.src_keep.reset();
  j.wait_for.clear();
  bool queued = false;
  {
    mutex_lock lock(mutex_);
    // A reset() that came in while the bytes moved fails the job, as it
    // would on the engine thread.
    if (error == 0) error = abort_code_locked(j);
    if (error == 0) {
      ++stats_.completed;
      stats_.bytes_copied += j.bytes;
    } else {
      ++stats_.failed;
    }
    // Signaled under mutex_, unlike on the engine thread: the fence has not
    // been handed out, so no callback can run here, and no queued job can
    // signal before it.
    (void)j.done->signal(error);
    signaled_through_ = j.seqno;
    inline_busy_ = false;
    // The engine thread also waits for this job when it is stopping.
    queued = !queue_.empty() || stopping_;
  }
  // The engine thread waits only if jobs were queued meanwhile, or it is
  // stopping (an idle engine is not woken: that wake-up is what running
  // inline saves);
  // reset() may wait for progress.
  if (queued) wake_.notify_all();
  progress_.notify_all();
}

void copy_engine::fail_next(unsigned count) {
  mutex_lock lock(mutex_);
  fail_next_ = count;
}

void copy_engine::set_extra_latency(fence_clock::duration extra) {
  mutex_lock lock(mutex_);
  // Clamped so that now() + extra cannot overflow the clock.
  extra_latency_ = std::clamp<fence_clock::duration>(extra, fence_clock::duration::zero(),
                                                     std::chrono::hours(24));
}

void copy_engine::reset(int error) {
  mutex_lock lock(mutex_);
  ++reset_generation_;
  reset_error_ = error < 0 ? error : -EIO;
  const std::uint64_t through = next_seqno_ - 1;
  wake_.notify_all();
  if (std::this_thread::get_id() == thread_.get_id()) return;
  while (signaled_through_ < through) lock.wait(progress_);
}

copy_engine_stats copy_engine::stats() const {
  mutex_lock lock(mutex_);
  return stats_;
}

int copy_engine::abort_code_locked(const job& j) const noexcept {
  if (j.reset_generation < reset_generation_) return reset_error_;
  if (stopping_) return -ECANCELED;
  return 0;
}

void copy_engine::run() noexcept {
  for (;;) {
    job j;
    {
      mutex_lock lock(mutex_);
      // A job running inline comes first: it has the earlier seqno.
      while ((!stopping_ && queue_.empty()) || inline_busy_) lock.wait(wake_);
      if (queue_.empty()) return;  // stopping and drained
      j = std::move(queue_.front());
      queue_.pop_front();
    }
    const int error = execute(j);
    // Drop our references before the fence tells the owner it may free them.
    j.dst_keep.reset();
    j.src_keep.reset();
    j.wait_for.clear();
    {
      mutex_lock lock(mutex_);
      if (error == 0) {
        ++stats_.completed;
        stats_.bytes_copied += j.bytes;
      } else {
        ++stats_.failed;
      }
    }
    (void)j.done->signal(error);
    {
      mutex_lock lock(mutex_);
      signaled_through_ = j.seqno;
    }
    progress_.notify_all();
  }
}

int copy_engine::wait_dependencies(job& j) noexcept {
  if (j.wait_for.empty()) return 0;
  // One wake-up callback per pending fence; it only bumps a counter under our
  // leaf lock, so a signaler on any thread can run it.
  std::vector<std::pair<fence*, fence::callback_id>> callbacks;
  try {
    callbacks.reserve(j.wait_for.size());
    for (const auto& f : j.wait_for) {
      auto id = f->add_callback([this](const fence&) {
        {
          mutex_lock lock(mutex_);
          ++wake_generation_;
        }
        wake_.notify_all();
      });
      if (id) callbacks.emplace_back(f.get(), *id);  // already_signaled: nothing to wait for
    }
  } catch (...) {
    // Out of memory while registering: fail this copy rather than hang.
    for (auto& [f, id] : callbacks) f->remove_callback(id);
    return -ENOMEM;
  }

  int code = 0;
  for (;;) {
    std::uint64_t seen = 0;
    {
      mutex_lock lock(mutex_);
      seen = wake_generation_;
      code = abort_code_locked(j);
    }
    if (code != 0) break;
    // is_signaled() may poll and signal a backend fence, running callbacks on
    // this thread - ours take mutex_, so it is not held here.
    const bool all = std::all_of(j.wait_for.begin(), j.wait_for.end(),
                                 [](const fence_ptr& f) { return f->is_signaled(); });
    if (all) break;
    mutex_lock lock(mutex_);
    while (wake_generation_ == seen && abort_code_locked(j) == 0) lock.wait(wake_);
  }
  for (auto& [f, id] : callbacks) f->remove_callback(id);
  if (code != 0) return code;
  for (const auto& f : j.wait_for) {
    if (const int e = f->error(); e != 0) return e;
  }
  return 0;
}

int copy_engine::execute(job& j) noexcept {
  if (const int e = wait_dependencies(j); e != 0) return e;
  if (j.inject_failure) return -EIO;

  const double rate = config_.bytes_per_second;
  const std::size_t chunk =
      rate > 0 ? std::clamp(static_cast<std::size_t>(rate / 100.0), std::size_t{4096}, unthrottled_chunk)
               : unthrottled_chunk;
  const auto start = fence_clock::now();
  std::size_t done = 0;
  while (done < j.bytes) {
    {
      mutex_lock lock(mutex_);
      if (const int code = abort_code_locked(j); code != 0) return code;
    }
    const std::size_t n = std::min(chunk, j.bytes - done);
    if (j.src != nullptr) {
      std::memcpy(static_cast<char*>(j.dst) + done, static_cast<const char*>(j.src) + done, n);
    } else {
      std::memset(static_cast<char*>(j.dst) + done, j.fill_value, n);
    }
    done += n;
    if (rate > 0) {
      // Pace against the start so rounding does not accumulate.
      const auto due = start + std::chrono::duration_cast<fence_clock::duration>(
                                   std::chrono::duration<double>(static_cast<double>(done) / rate));
      mutex_lock lock(mutex_);
      while (abort_code_locked(j) == 0 && lock.wait_until(wake_, due) != std::cv_status::timeout) {
      }
    }
  }
  if (j.extra_latency > fence_clock::duration::zero()) {
    const auto due = fence_clock::now() + j.extra_latency;
    mutex_lock lock(mutex_);
    while (abort_code_locked(j) == 0 && lock.wait_until(wake_, due) != std::cv_status::timeout) {
    }
    if (const int code = abort_code_locked(j); code != 0) return code;
  }
  return 0;
}

}  // namespace xbuf::detail
