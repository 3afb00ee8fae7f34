// SPDX-License-Identifier: MIT
//
// server_state.hpp - what every session of one xbufd shares (internal).
//
// Overview
//   Lives for run_server's duration. The io_context runs every session's
//   strand on one thread; the worker pool runs the blocking manager calls.
//   on_pool() is the bridge between the two: a job goes to the pool, its
//   result (or exception) comes back on the awaiting coroutine's strand.
//
// Rules
//   - Everything here is thread-safe or const after construction: mm and
//     clients lock themselves, next_owner is atomic.
//   - Context of on_pool(): the job may block; it must not touch the
//     session's socket or anything else of its strand.
#pragma once

#include <atomic>
#include <chrono>
#include <boost/asio.hpp>
#include <cstddef>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "allocator/memory_manager.hpp"
#include "server/client_registry.hpp"
#include "server/log.hpp"
#include "server/pressure_notice.hpp"
#include "server/server.hpp"

namespace xbuf::server {

namespace asio = boost::asio;

struct server_state {
  server_state(memory_manager& m, const server_config& c, asio::io_context& io)
      : mm(m), config(c), ioc(io), pool(static_cast<std::size_t>(c.worker_threads < 1 ? 1 : c.worker_threads)),
        log(c.log) {}

  memory_manager& mm;
  const server_config& config;
  asio::io_context& ioc;
  asio::thread_pool pool;
  const logger log;
  // Conditions a client can repeat at will are logged once per interval.
  const std::chrono::steady_clock::duration log_interval = std::chrono::seconds(1);
  log_limiter refused_log{log_interval};  // connections over --max-connections
  client_registry clients;  // who is connected: stats, the connection limit, stage one of shutdown
  pressure_notice pressure{clients, default_pressure_interval};  // memory_pressure to every client
  std::atomic<owner_id> next_owner{1};
};

// Runs `f` (blocking) on the worker pool and completes on the awaiting
// coroutine's executor with its result, wrapped in an optional because
// result<T> is not default-constructible. An exception `f` throws is
// rethrown at the co_await, on the strand, so it reaches the session
// boundary instead of a pool thread. Callers name the closure first, then
// co_await on_pool(pool, std::move(job)).
//
// Not a coroutine taking `f`: GCC 12 relocates closure-type coroutine
// parameters bitwise (a std::string inside was freed twice), so the closure
// travels through async_initiate and plain handlers instead.
template <class F>
auto on_pool(asio::thread_pool& pool, F f) {
  using R = std::invoke_result_t<F>;
  return asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr, std::optional<R>)>(
      [&pool](auto handler, F fn) {
        auto ex = asio::get_associated_executor(handler);
        asio::post(pool, [handler = std::move(handler), fn = std::move(fn), ex]() mutable {
          std::exception_ptr failure;
          std::optional<R> r;
          try {
            r.emplace(fn());
          } catch (...) {
            failure = std::current_exception();
          }
          asio::post(ex, [handler = std::move(handler), failure, r = std::move(r)]() mutable {
            std::move(handler)(failure, std::move(r));
          });
        });
      },
      asio::use_awaitable, std::move(f));
}

}  // namespace xbuf::server
