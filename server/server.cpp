// SPDX-License-Identifier: MIT
//
// server.cpp - the server object: the listening socket, the io_context and
// the worker pool, and the two-stage shutdown.
#include "server/server.hpp"

#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <exception>
#include <memory>
#include <string>

#include <boost/asio/experimental/as_tuple.hpp>

#include "server/listener.hpp"
#include "server/metrics_http.hpp"
#include "server/server_state.hpp"
#include "server/stats.hpp"
#include "server/systemd.hpp"

namespace xbuf::server {

namespace {

// Completion of a top-level coroutine: an exception that escaped is logged.
auto log_exception(server_state& srv, const char* what) {
  return [&srv, what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      srv.log.error("%s stopped by exception: %s", what, ex.what());
    }
  };
}

// --stats-interval: the status screen, assembled on the pool like a stats request.
asio::awaitable<void> stats_loop(server_state& srv, asio::steady_timer& timer) {
  constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);
  for (;;) {
    timer.expires_after(std::chrono::seconds(srv.config.stats_interval_s));
    auto [ec] = co_await timer.async_wait(tuple_awaitable);
    if (ec) co_return;
    auto job = [&srv] { return collect_stats(srv.mm, srv.clients); };
    print_status(stdout, *co_await on_pool(srv.pool, std::move(job)));
  }
}

// Stage one: no new clients, every session cancelled. Stage two happens by
// itself: each session releases its owner, and run() returns when nothing
// is left.
void begin_shutdown(server_state& srv, asio::local::stream_protocol::acceptor& acceptor,
                    asio::steady_timer& stats_timer, metrics_server* metrics) {
  boost::system::error_code ignored;
  acceptor.close(ignored);
  stats_timer.cancel();
  if (metrics) metrics->stop();
  srv.clients.cancel_all();
}

// Runs the io_context until no work is left; an exception from a handler
// is logged and the loop goes on.
void run_io(server_state& srv) {
  for (;;) {
    try {
      srv.ioc.run();
      return;
    } catch (const std::exception& e) {
      srv.log.error("io_context: %s", e.what());
    }
  }
}

}  // namespace

status run_server(memory_manager& mm, const server_config& config) {
  const bool activated = config.listen_fd >= 0;
  auto fd = activated ? result<int>(config.listen_fd) : bind_listener(config);
  if (!fd) return std::move(fd).err();
  // The socket file is ours to remove only if we made it.
  auto remove_socket_file = [&] {
    if (!activated) ::unlink(config.socket_path.c_str());
  };
  std::signal(SIGPIPE, SIG_IGN);  // a vanished peer is an error value, not a signal

  asio::io_context ioc(1);
  server_state srv(mm, config, ioc);
  asio::local::stream_protocol::acceptor acceptor(ioc);
  try {
    acceptor.assign(asio::local::stream_protocol(), *fd);
  } catch (const std::exception& e) {
    ::close(*fd);
    return fail(errc::io_error, std::string("acceptor: ") + e.what());
  }
  if (activated) {
    srv.log("listening on %s (socket from systemd); at most %zu connections, %zu bytes queued per client, %lld ms "
            "per frame", config.socket_path.c_str(), config.max_connections, config.max_queued_bytes,
            static_cast<long long>(config.frame_timeout.count()));
  } else {
    srv.log("listening on %s (mode %04o%s%s); at most %zu connections, %zu bytes queued per client, %lld ms per "
            "frame", config.socket_path.c_str(), config.socket_mode, config.socket_group.empty() ? "" : ", group ",
            config.socket_group.c_str(), config.max_connections, config.max_queued_bytes,
            static_cast<long long>(config.frame_timeout.count()));
  }

  std::unique_ptr<metrics_server> metrics;
  if (config.metrics) {
    auto m = metrics_server::open(srv, *config.metrics);
    if (!m) {
      remove_socket_file();  // the acceptor closes its fd
      return std::move(m).err();
    }
    metrics = std::move(*m);
    // On stdout whatever --quiet says: scripts and tests read the port here.
    std::printf("xbufd: metrics on %s\n", metrics_url(metrics->local_address()).c_str());
    std::fflush(stdout);
  }

  asio::steady_timer stats_timer(ioc);
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    srv.log("signal %d: shutting down", sig);
    notify_stopping();
    begin_shutdown(srv, acceptor, stats_timer, metrics.get());
  });
  asio::co_spawn(ioc, accept_loop(srv, acceptor), log_exception(srv, "accept loop"));
  if (metrics) metrics->start();
  if (config.stats_interval_s > 0) asio::co_spawn(ioc, stats_loop(srv, stats_timer), log_exception(srv, "stats"));
  // The socket listens and the accept loop is queued ahead of anything
  // else: a client that connects from here on is served.
  notify_ready("serving " + config.socket_path);
  run_io(srv);
  srv.pool.join();
  remove_socket_file();
  srv.log("stopped");
  return ok();
}

}  // namespace xbuf::server
