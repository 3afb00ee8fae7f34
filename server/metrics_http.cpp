// SPDX-License-Identifier: MIT
#include "server/metrics_http.hpp"

#include <boost/asio/experimental/as_tuple.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "server/metrics_text.hpp"
#include "server/stats.hpp"

namespace xbuf::server {

namespace beast = boost::beast;
namespace http = beast::http;

struct metrics_server::connection {
  explicit connection(tcp::socket s) : stream(std::move(s)) {}
  beast::tcp_stream stream;
};

namespace {

constexpr auto tuple_awaitable = asio::experimental::as_tuple(asio::use_awaitable);

// What a request gets: the route is the path, then the method.
struct answer {
  http::status status;
  std::string body;
  bool scrape = false;  // body to be filled with the exposition
};

answer route(const http::request<http::empty_body>& req) {
  const std::string_view target = req.target();
  const std::string_view path = target.substr(0, target.find('?'));
  if (path != "/metrics") return {http::status::not_found, "not found: the metrics are at /metrics\n"};
  if (req.method() != http::verb::get) {
    return {http::status::method_not_allowed, "method not allowed: /metrics takes GET\n"};
  }
  return {http::status::ok, {}, true};
}

http::response<http::string_body> response(http::status status, unsigned version, bool keep_alive,
                                           std::string body, std::string_view content_type) {
  http::response<http::string_body> res{status, version};
  res.set(http::field::server, "xbufd");
  res.set(http::field::content_type, content_type);
  if (status == http::status::method_not_allowed) res.set(http::field::allow, "GET");
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

constexpr std::string_view plain_text = "text/plain; charset=utf-8";

// The client left, went silent past the timeout, or we closed it: nothing
// to answer.
bool quiet_end(const boost::system::error_code& ec) {
  return ec == http::error::end_of_stream || ec == beast::error::timeout || ec == asio::error::operation_aborted ||
         ec == asio::error::connection_reset || ec == asio::error::eof || ec == asio::error::bad_descriptor;
}

// The response's end is a FIN, not a reset: the client reads it all.
void close_gently(beast::tcp_stream& stream) {
  boost::system::error_code ignored;
  stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

}  // namespace

result<std::unique_ptr<metrics_server>> metrics_server::open(server_state& srv, const metrics_address& where,
                                                             metrics_limits limits) {
  const std::string what = "metrics " + to_string(where);
  boost::system::error_code ec;
  const auto ip = asio::ip::make_address(where.host, ec);
  if (ec) return fail(errc::invalid_argument, what + ": not an address: " + ec.message());
  const tcp::endpoint endpoint(ip, where.port);
  tcp::acceptor acceptor(srv.ioc);
  auto step = [&](const char* name) {
    return fail(errc::io_error, what + ": " + name + ": " + ec.message());
  };
  if (acceptor.open(endpoint.protocol(), ec)) return step("socket");
  // A restarted daemon rebinds while its old scrapes sit in TIME_WAIT.
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec)) return step("SO_REUSEADDR");
  if (acceptor.bind(endpoint, ec)) return step("bind");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec)) return step("listen");
  const tcp::endpoint bound = acceptor.local_endpoint(ec);
  if (ec) return step("getsockname");
  metrics_address local{.host = where.host, .port = bound.port()};
  return std::unique_ptr<metrics_server>(new metrics_server(srv, std::move(acceptor), std::move(local), limits));
}

metrics_server::metrics_server(server_state& srv, tcp::acceptor acceptor, metrics_address local,
                               metrics_limits limits)
    : srv_(srv),
      limits_(limits),
      devices_(srv.mm.device_backend().devices()),
      strand_(asio::make_strand(srv.ioc)),
      acceptor_(std::move(acceptor)),
      local_(std::move(local)),
      accept_log_(srv.log_interval),
      refused_log_(srv.log_interval) {}

metrics_server::~metrics_server() = default;

void metrics_server::start() {
  asio::co_spawn(strand_, accept_loop(), [this](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      srv_.log("metrics: accept loop stopped by exception: %s", ex.what());
    }
  });
}

void metrics_server::stop() {
  asio::post(strand_, [this] {
    stopping_ = true;
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    for (auto& [id, c] : open_) c->stream.close();
  });
}

asio::awaitable<void> metrics_server::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(strand_, tuple_awaitable);
    if (stopping_ || !acceptor_.is_open()) co_return;
    if (ec) {
      // The fd limit or a client that left: the Unix listener backs off for
      // the former; here a failed accept only costs a scrape, so go on
      // after a pause rather than spin.
      std::uint64_t left_out = 0;
      if (accept_log_.allow(&left_out)) {
        srv_.log("metrics: accept: %s [%llu more since the last line]", ec.message().c_str(),
                 static_cast<unsigned long long>(left_out));
      }
      asio::steady_timer pause(strand_, srv_.config.accept_backoff);
      co_await pause.async_wait(tuple_awaitable);
      continue;
    }
    if (open_.size() >= limits_.max_connections) {
      std::uint64_t left_out = 0;
      if (refused_log_.allow(&left_out)) {
        srv_.log("metrics: closed a connection: %zu are open, the most there may be [%llu more since the last line]",
                 open_.size(), static_cast<unsigned long long>(left_out));
      }
      continue;  // the socket closes here
    }
    const std::uint64_t id = next_connection_++;
    open_.emplace(id, std::make_unique<connection>(std::move(socket)));
    asio::co_spawn(strand_, serve(id), [this](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        srv_.log("metrics: connection stopped by exception: %s", ex.what());
      }
    });
  }
}

// `id` is open_'s key for the connection accept_loop() listed, not the
// socket itself: GCC 12 mishandles some coroutine parameters (server_state.hpp,
// on_pool: a std::string in a closure freed twice); an integer is safe.
asio::awaitable<void> metrics_server::serve(std::uint64_t id) {
  // Unlisted (and so closed) when this coroutine ends, however it ends.
  struct unlist {
    std::map<std::uint64_t, std::unique_ptr<connection>>& open;
    std::uint64_t id;
    ~unlist() { open.erase(id); }
  } unlisted{open_, id};
  connection& conn = *open_.at(id);

  beast::flat_buffer buffer(limits_.header_limit);  // its max_size: the header never grows it past
  while (!stopping_) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits_.header_limit));
    conn.stream.expires_after(limits_.io_timeout);
    auto [rec, nread] = co_await http::async_read(conn.stream, buffer, parser, tuple_awaitable);
    if (rec) {
      if (quiet_end(rec) || stopping_) co_return;
      // Unparseable, too long, or carrying a body: say so, then close.
      auto res = response(http::status::bad_request, 11, false, "bad request: " + rec.message() + "\n", plain_text);
      conn.stream.expires_after(limits_.io_timeout);
      co_await http::async_write(conn.stream, res, tuple_awaitable);
      close_gently(conn.stream);
      co_return;
    }
    const http::request<http::empty_body>& req = parser.get();
    answer a = route(req);
    std::string_view type = plain_text;
    if (a.scrape) {
      auto job = [&srv = srv_, devices = devices_] {
        return render_metrics(collect_stats(srv.mm, srv.clients), devices);
      };
      auto work = asio::make_work_guard(srv_.ioc);  // run() stays up until the job is back (Rules)
      a.body = std::move(*co_await on_pool(srv_.pool, std::move(job)));
      work.reset();
      type = metrics_content_type;
      if (stopping_) co_return;
    }
    const bool keep_alive = req.keep_alive();
    auto res = response(a.status, req.version(), keep_alive, std::move(a.body), type);
    if (req.method() == http::verb::head) res.body().clear();  // Content-Length stays; HEAD gets no body
    conn.stream.expires_after(limits_.io_timeout);
    auto [wec, nwritten] = co_await http::async_write(conn.stream, res, tuple_awaitable);
    if (wec) co_return;
    if (!keep_alive) {
      close_gently(conn.stream);
      co_return;
    }
  }
}

}  // namespace xbuf::server
