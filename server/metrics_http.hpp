// SPDX-License-Identifier: MIT
//
// metrics_http.hpp - the HTTP side of `xbufd --metrics` (internal): a
// Boost.Beast listener that answers `GET /metrics` with metrics_text.hpp's
// exposition.
//
// Overview
//   One TCP acceptor on a loopback address (metrics_address.hpp); one
//   coroutine per connection, HTTP/1.1 with keep-alive, one request at a
//   time. A scrape gathers the operator's stats on the worker pool, as the
//   --stats-interval screen does, renders them there, and writes the text
//   back from the connection's coroutine.
//
//     GET /metrics[?...]     200, text/plain; version=0.0.4
//     another path           404, a one-line text body
//     /metrics, not GET      405, Allow: GET
//     a request it cannot    400, then the connection is closed
//     parse or that is past
//     the header limit
//
//   Bounds, so that a slow or hostile local client can neither grow the
//   daemon nor stall it (metrics_limits): the request header is read into a
//   buffer of at most header_limit bytes and a request may carry no body;
//   every read and write must finish within io_timeout, else the connection
//   is closed; at most max_connections are open, and one more is accepted
//   and closed at once (logged once per interval). A connection's failure
//   is that connection's: the listener and the other connections go on.
//
// Rules
//   - Context: everything but the stats job runs on one strand of srv.ioc:
//     the accept loop, every connection's coroutine, stop(). The set of open
//     connections is touched only there, so it needs no lock.
//   - collect_stats() takes the manager's mutex: it runs on srv.pool via
//     on_pool(), never on an io_context thread. At most max_connections
//     scrapes wait on the pool at once.
//   - While a scrape waits on the pool, it holds work on srv.ioc, so
//     run_server's run() does not return under it and every connection's
//     coroutine ends before the metrics_server is destroyed.
//   - Shutdown, stage one: stop() closes the acceptor and every open
//     connection; the coroutines see their operations aborted and end.
//   - Exceptions in a connection's coroutine end that connection and are
//     logged; nothing is thrown from here into run_server.
#pragma once

#include <boost/asio.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>

#include "backends/backend.hpp"
#include "core/result.hpp"
#include "server/log.hpp"
#include "server/metrics_address.hpp"
#include "server/server_state.hpp"

namespace xbuf::server {

struct metrics_limits {
  std::size_t header_limit = 8 * 1024;        // request line and headers, bytes
  std::chrono::milliseconds io_timeout{5'000};  // each request read, each response written
  std::size_t max_connections = 8;            // open at once; one more is closed
};

class metrics_server {
 public:
  // Listens on `where` (SO_REUSEADDR; port 0: one the kernel picks).
  // Errors: invalid_argument (not an address literal), io_error (open, bind
  // or listen, naming the address and the reason: "metrics 127.0.0.1:80:
  // bind: Permission denied"). Context: call on the thread that runs
  // run_server, before srv.ioc runs. Ownership: borrows srv, which must
  // outlive it.
  static result<std::unique_ptr<metrics_server>> open(server_state& srv, const metrics_address& where,
                                                      metrics_limits limits = {});

  metrics_server(const metrics_server&) = delete;
  metrics_server& operator=(const metrics_server&) = delete;
  ~metrics_server();

  // The address it listens on, with the port the kernel picked.
  const metrics_address& local_address() const noexcept { return local_; }

  // Spawns the accept loop on the strand. Call once.
  void start();

  // Stage one of shutdown: no new connections, every open one closed.
  // Context: any thread of srv.ioc or the one that runs it; returns at once
  // (the work is posted to the strand). Idempotent.
  void stop();

 private:
  using strand = asio::strand<asio::io_context::executor_type>;
  using tcp = asio::ip::tcp;
  struct connection;

  metrics_server(server_state& srv, tcp::acceptor acceptor, metrics_address local, metrics_limits limits);

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> serve(std::uint64_t id);

  server_state& srv_;
  const metrics_limits limits_;
  const std::span<const device_info> devices_;  // the backend's; fixed for its life
  strand strand_;
  tcp::acceptor acceptor_;
  metrics_address local_;
  log_limiter accept_log_;   // failed accepts
  log_limiter refused_log_;  // connections past max_connections
  // On the strand only (Rules).
  bool stopping_ = false;
  std::uint64_t next_connection_ = 0;
  std::map<std::uint64_t, std::unique_ptr<connection>> open_;  // each erased by its own coroutine
};

}  // namespace xbuf::server
