// SPDX-License-Identifier: MIT
//
// The route table without sockets: request frames go through run_route()
// into handlers that work on a real memory manager over the sim backend,
// and the replies come back as the bytes a client would read.
#include "server/handlers.hpp"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <set>
#include <optional>
#include <thread>
#include <vector>

#include "server/stats.hpp"
#include "tests/common/sim_manager.hpp"

namespace xbuf::server {
namespace {

using test::KiB;

// One complete frame out of encoded bytes, as the daemon's (requests) or
// the client's (replies, events) parser sees it.
wire::frame parse(const std::vector<std::uint8_t>& bytes, bool requests) {
  wire::frame_parser p(requests);
  p.feed(bytes);
  auto r = p.next();
  EXPECT_EQ(r.status, wire::parse_status::complete) << r.error;
  return r.frame_;
}

struct HandlersTest : ::testing::Test {
  test::sim_manager sim;
  logger log{false};
  client_registry clients;
  std::mutex events_mutex;
  std::vector<wire::frame> events;  // every event any session posted
  std::vector<owner_id> owners;
  std::string client_name = "test";  // what session() says in hello

  // What the daemon does when a session ends: without it, a client fence
  // nobody signals would keep the manager's destructor waiting.
  void TearDown() override {
    for (owner_id o : owners) sim.mm->release_owner(o);
  }

  // `uid`: the peer's, as SO_PEERCRED gave it; 0 (root) is the operator.
  std::unique_ptr<session_context> session(owner_id owner, bool greet = true, std::uint32_t uid = 0) {
    owners.push_back(owner);
    clients.add(client_record{.owner = owner, .pid = static_cast<std::int32_t>(1000 + owner), .uid = uid, .gid = uid,
                              .name = {}},
                nullptr);
    auto sink = [this](std::vector<std::uint8_t> bytes) {
      std::lock_guard lock(events_mutex);
      events.push_back(parse(bytes, false));
    };
    auto ctx = std::make_unique<session_context>(*sim.mm, clients, log, owner, sink);
    if (greet) {
      auto h = call<wire::hello_reply>(*ctx, wire::hello_request{.version = wire::protocol_version,
                                                                 .client_name = client_name});
      EXPECT_TRUE(h) << h.err().describe();
    }
    return ctx;
  }

  // Routes one request the way a session does. A rerun wait (alloc,
  // cpu_begin) is waited for here, blocking the test thread as the session
  // waits without a thread, and the request runs again; the wait of `wait`
  // is left to the tests of wait, which look at the outcome themselves.
  template <class M>
  route_outcome route_request(session_context& ctx, const M& m, std::uint64_t id = 77) {
    const wire::frame f = parse(wire::encode_message(id, m), true);
    route_outcome out = run_route(find_route(f.header.type), ctx, f);
    while (out.wait && out.wait->rerun) {
      const auto timeout = out.wait->timeout_ms == wait_forever_ms
                               ? wait_forever
                               : fence_clock::duration(std::chrono::milliseconds(out.wait->timeout_ms));
      (void)out.wait->fence->wait(timeout, &ctx.cancel);
      out = run_route(find_route(f.header.type), ctx, f);
    }
    ctx.fences.arm();
    return out;
  }

  // The reply to `m` as the client decodes it; R = empty_body for statuses.
  template <class R, class M>
  result<R> call(session_context& ctx, const M& m) {
    route_outcome out = route_request(ctx, m);
    EXPECT_FALSE(out.wait) << "only wait hands back a fence";
    const wire::frame f = parse(out.reply.bytes, false);
    EXPECT_EQ(f.header.request_id, 77u);
    return wire::decode_reply<R>(M::type, f);
  }

  buffer_id alloc(session_context& ctx, std::uint64_t size, std::vector<placement> where) {
    auto r = call<wire::buffer_reply>(ctx, wire::alloc_request{.size = size, .alignment = 0,
                                                               .placements = std::move(where), .flags = 0,
                                                               .name = "t"});
    EXPECT_TRUE(r) << r.err().describe();
    return r ? r->buffer : 0;
  }

  std::size_t events_of_type(wire::msg_type t) {
    std::lock_guard lock(events_mutex);
    std::size_t n = 0;
    for (const auto& e : events) n += e.header.type == static_cast<std::uint16_t>(t) ? 1 : 0;
    return n;
  }
};

TEST_F(HandlersTest, EveryRequestTypeHasExactlyOneRoute) {
  std::set<std::uint16_t> seen;
  for (const auto& r : route_table()) {
    EXPECT_TRUE(wire::is_request(static_cast<std::uint16_t>(r.type))) << wire::type_name(static_cast<std::uint16_t>(r.type));
    EXPECT_TRUE(seen.insert(static_cast<std::uint16_t>(r.type)).second);
    EXPECT_NE(r.run, nullptr);
  }
  for (auto t = static_cast<std::uint16_t>(wire::msg_type_first_request);
       t <= static_cast<std::uint16_t>(wire::msg_type_last_request); ++t) {
    const route* r = find_route(t);
    ASSERT_NE(r, nullptr) << wire::type_name(t);
    EXPECT_EQ(static_cast<std::uint16_t>(r->type), t);
  }
  EXPECT_EQ(seen.size(), route_table().size());
  // What may block runs on the pool; the two that never block stay inline.
  EXPECT_EQ(find_route(static_cast<std::uint16_t>(wire::msg_type::hello))->where, run_on::session);
  EXPECT_EQ(find_route(static_cast<std::uint16_t>(wire::msg_type::wait))->where, run_on::session);
  EXPECT_EQ(find_route(static_cast<std::uint16_t>(wire::msg_type::alloc))->where, run_on::pool);
  EXPECT_EQ(find_route(static_cast<std::uint16_t>(wire::msg_type::cpu_begin))->where, run_on::pool);
}

TEST_F(HandlersTest, UnknownRequestTypeIsRejectedAsUnsupported) {
  auto ctx = session(1);
  for (std::uint16_t t : {std::uint16_t{0}, std::uint16_t{0x7777},
                          static_cast<std::uint16_t>(wire::msg_type::move_notify)}) {
    EXPECT_EQ(find_route(t), nullptr) << t;
    const wire::frame f{.header = {.type = t, .request_id = 5}, .payload = {}};
    route_outcome out = run_route(find_route(t), *ctx, f);
    ASSERT_FALSE(out.wait);
    ASSERT_GE(out.reply.bytes.size(), wire::header_size);
    // The client's parser refuses a reply to a type it does not know, so
    // read the status straight from the payload.
    const std::vector<std::uint8_t> payload(out.reply.bytes.begin() + wire::header_size, out.reply.bytes.end());
    wire::reader rd(payload, "reply");
    errc code = errc::ok;
    std::string message;
    rd("code", code);
    rd("message", message);
    ASSERT_FALSE(rd.failed()) << rd.error_message();
    EXPECT_EQ(code, errc::unsupported);
    EXPECT_NE(message.find("not implemented by this xbufd"), std::string::npos) << message;
    EXPECT_NE(message.find(wire::type_name(t)), std::string::npos) << message;
  }
}

TEST_F(HandlersTest, RequestsBeforeHelloAreRefusedAsBadState) {
  auto ctx = session(1, /*greet=*/false);
  auto r = call<wire::buffer_reply>(*ctx, wire::alloc_request{.size = 4 * KiB, .alignment = 0,
                                                              .placements = {placement::pageable()}, .flags = 0,
                                                              .name = ""});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::bad_state);
  EXPECT_NE(r.err().message.find("send hello first"), std::string::npos) << r.err().message;
  EXPECT_TRUE(sim.mm->buffers().empty()) << "the refused request must not have run";
}

TEST_F(HandlersTest, HelloChecksTheVersionAndNamesTheClient) {
  auto ctx = session(3, /*greet=*/false);
  auto bad = call<wire::hello_reply>(*ctx, wire::hello_request{.version = 99, .client_name = "old"});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.code(), errc::unsupported);
  EXPECT_FALSE(ctx->greeted.load());
  auto h = call<wire::hello_reply>(*ctx, wire::hello_request{.version = wire::protocol_version,
                                                             .client_name = std::string(100, 'n')});
  ASSERT_TRUE(h) << h.err().describe();
  EXPECT_EQ(h->owner, 3u);
  EXPECT_EQ(h->server_version, wire::protocol_version);
  auto listed = clients.snapshot();
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].name, std::string(64, 'n')) << "names are cut to 64 bytes";
}

TEST_F(HandlersTest, BufferLifecycleRequestsAreRouted) {
  auto a = session(1);
  auto b = session(2);
  const buffer_id buf = alloc(*a, 64 * KiB, {placement::vram(0), placement::pageable()});
  ASSERT_NE(buf, 0u);
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::share_request{.buffer = buf, .with = 2}));
  auto att = call<wire::attach_reply>(*b, wire::attach_request{.buffer = buf, .device = 0,
                                                               .mode = attach_mode::pinned, .peer_capable = false});
  ASSERT_TRUE(att) << att.err().describe();
  auto m = call<wire::map_reply>(*b, wire::map_request{.attachment = att->attachment});
  ASSERT_TRUE(m) << m.err().describe();
  EXPECT_EQ(m->where, placement::vram(0));
  ASSERT_EQ(m->ranges.size(), 1u);
  EXPECT_EQ(m->ranges[0].size, 64 * KiB);
  EXPECT_TRUE(call<wire::empty_body>(*b, wire::unmap_request{.id = att->attachment}));
  EXPECT_TRUE(call<wire::empty_body>(*b, wire::detach_request{.id = att->attachment}));
  auto v = call<wire::validate_reply>(*a, wire::validate_request{.buffers = {buf}});
  ASSERT_TRUE(v) << v.err().describe();
  EXPECT_EQ(v->in_place, 1u);
  auto cpu = call<wire::cpu_begin_reply>(*a, wire::cpu_begin_request{.buffer = buf, .write = true, .timeout_ms = 0});
  ASSERT_TRUE(cpu) << cpu.err().describe();
  EXPECT_EQ(cpu->size, 64 * KiB);
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::cpu_end_request{.id = buf}));
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::free_request{.id = buf}));
  EXPECT_TRUE(sim.mm->buffers().empty());
}

TEST_F(HandlersTest, ExportReplyCarriesTheFd) {
  auto a = session(1);
  const buffer_id buf = alloc(*a, 16 * KiB, {placement::pageable()});
  route_outcome out = route_request(*a, wire::export_request{.id = buf});
  ASSERT_TRUE(out.reply.fd) << "the export reply travels with its fd";
  struct stat st{};
  EXPECT_EQ(::fstat(out.reply.fd.get(), &st), 0);
  auto r = wire::decode_reply<wire::export_reply>(wire::msg_type::export_fd, parse(out.reply.bytes, false));
  ASSERT_TRUE(r) << r.err().describe();
  EXPECT_EQ(r->size, 16 * KiB);
  EXPECT_EQ(r->kind, memory_kind::host_pageable);
  // A failed export has no fd.
  route_outcome bad = route_request(*a, wire::export_request{.id = 999});
  EXPECT_FALSE(bad.reply.fd);
}

TEST_F(HandlersTest, StatsListsClientsAndTheirBuffers) {
  auto a = session(1);
  auto b = session(2);
  alloc(*a, 16 * KiB, {placement::pageable()});
  alloc(*a, 16 * KiB, {placement::pageable()});
  auto s = call<wire::stats_reply>(*b, wire::stats_request{});
  ASSERT_TRUE(s) << s.err().describe();
  EXPECT_EQ(s->backend, std::string(sim.mm->device_backend().name()));
  ASSERT_EQ(s->clients.size(), 2u);
  EXPECT_EQ(s->clients[0].owner, 1u);
  EXPECT_EQ(s->clients[0].buffers, 2u);
  EXPECT_EQ(s->clients[0].bytes, 32 * KiB);
  EXPECT_EQ(s->clients[0].name, "test");
  EXPECT_EQ(s->clients[1].buffers, 0u);
  EXPECT_EQ(s->buffers.size(), 2u);
  EXPECT_FALSE(s->buffers_truncated);
  EXPECT_FALSE(s->domains.empty());
  EXPECT_FALSE(s->counters.empty());
}

TEST_F(HandlersTest, ClientFencesSignalWaitAndReportOnce) {
  auto a = session(1);
  const buffer_id buf = alloc(*a, 16 * KiB, {placement::pageable()});
  auto f = call<wire::fence_reply>(*a, wire::add_client_fence_request{.buffer = buf, .usage = fence_usage::write,
                                                                       .deadline_ms = 0});
  ASSERT_TRUE(f) << f.err().describe();

  // wait hands the session the fence; finish_wait() answers timed_out
  // while it is unsignaled.
  route_outcome w = route_request(*a, wire::wait_request{.fence = f->fence, .timeout_ms = 20});
  ASSERT_TRUE(w.wait);
  EXPECT_TRUE(w.reply.bytes.empty());
  EXPECT_EQ(w.wait->timeout_ms, 20u);
  const wire::frame_header wh{.type = static_cast<std::uint16_t>(wire::msg_type::wait), .request_id = 9};
  auto late = wire::decode_reply<wire::wait_reply>(wire::msg_type::wait, parse(finish_wait(wh, *w.wait).bytes, false));
  ASSERT_FALSE(late);
  EXPECT_EQ(late.code(), errc::timed_out);
  EXPECT_NE(late.err().message.find("20 ms"), std::string::npos) << late.err().message;

  EXPECT_EQ(call<wire::empty_body>(*a, wire::signal_client_fence_request{.fence = f->fence, .error = 5}).code(),
            errc::invalid_argument);
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::signal_client_fence_request{.fence = f->fence, .error = -EIO}));
  EXPECT_EQ(call<wire::empty_body>(*a, wire::signal_client_fence_request{.fence = f->fence, .error = 0}).code(),
            errc::already_signaled);
  auto done = wire::decode_reply<wire::wait_reply>(wire::msg_type::wait, parse(finish_wait(wh, *w.wait).bytes, false));
  ASSERT_TRUE(done) << done.err().describe();
  EXPECT_EQ(done->fence_error, -EIO);
  EXPECT_EQ(events_of_type(wire::msg_type::fence_signaled), 1u);
}

// A buffer being evicted behind its client's fence: exporting it must not
// hold a pool thread until that fence signals (no shared thread waits for
// a client). The handler hands the session the move's fence instead.
TEST_F(HandlersTest, ExportOfABufferWhoseMoveWaitsForAClientIsHandedToTheSession) {
  auto a = session(1);
  auto b = session(2);
  const buffer_id busy = alloc(*a, 1024 * KiB, {placement::vram(0), placement::pageable()});
  auto f = call<wire::fence_reply>(*a, wire::add_client_fence_request{.buffer = busy, .usage = fence_usage::read,
                                                                       .deadline_ms = 0});
  ASSERT_TRUE(f) << f.err().describe();
  // b needs vram0: a's buffer is moved out, pipelined after a's fence.
  std::optional<route_outcome> bs;
  std::thread pusher([&] {
    bs = route_request(*b, wire::alloc_request{.size = 512 * KiB, .alignment = 0,
                                               .placements = {placement::vram(0)}, .flags = 0, .name = "b"});
  });
  for (int i = 0; i < 10000 && sim.domain("vram0").delayed_free_bytes == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_GT(sim.domain("vram0").delayed_free_bytes, 0u) << "the eviction never started";
  const wire::frame ex = parse(wire::encode_message(5, wire::export_request{.id = busy}), true);
  route_outcome out = run_route(find_route(ex.header.type), *a, ex);
  ASSERT_TRUE(out.wait) << "export waited for the client's fence on the calling thread";
  EXPECT_TRUE(out.wait->rerun);
  EXPECT_FALSE(out.wait->fence->is_signaled());
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::signal_client_fence_request{.fence = f->fence, .error = 0}));
  ASSERT_TRUE(out.wait->fence->wait(std::chrono::seconds(20)));
  route_outcome again = run_route(find_route(ex.header.type), *a, ex);
  ASSERT_FALSE(again.wait);
  EXPECT_TRUE(again.reply.fd) << "the rerun exports, once the move is done";
  pusher.join();
}

TEST_F(HandlersTest, HandlerErrorsBecomeTheirWireStatus) {
  auto a = session(1);
  auto flags = call<wire::buffer_reply>(*a, wire::alloc_request{.size = 4 * KiB, .alignment = 0,
                                                                .placements = {placement::pageable()},
                                                                .flags = 0x80, .name = ""});
  EXPECT_EQ(flags.code(), errc::invalid_argument);
  auto huge = call<wire::buffer_reply>(*a, wire::alloc_request{.size = 1ull << 40, .alignment = 0,
                                                               .placements = {placement::pageable()}, .flags = 0,
                                                               .name = ""});
  EXPECT_FALSE(huge);
  EXPECT_NE(huge.code(), errc::io_error) << "the manager's own code travels, not a generic one";
  EXPECT_EQ(call<wire::empty_body>(*a, wire::free_request{.id = 12345}).code(), errc::not_found);
  EXPECT_EQ(call<wire::map_reply>(*a, wire::map_request{.attachment = 12345}).code(), errc::not_found);
  EXPECT_EQ(call<wire::empty_body>(*a, wire::cpu_end_request{.id = 12345}).code(), errc::not_found);
  auto w = call<wire::wait_reply>(*a, wire::wait_request{.fence = 4242, .timeout_ms = 0});
  EXPECT_EQ(w.code(), errc::not_found);
  EXPECT_NE(w.err().message.find("fence 4242"), std::string::npos) << w.err().message;

  // A payload that is not its message: protocol_error naming the field.
  wire::writer junk;
  junk.u64(1);  // free wants 8 bytes: give it 9
  junk.u8(0);
  const wire::frame f{.header = {.type = static_cast<std::uint16_t>(wire::msg_type::free), .request_id = 3},
                      .payload = junk.out()};
  auto out = run_route(find_route(f.header.type), *a, f);
  auto r = wire::decode_reply<wire::empty_body>(wire::msg_type::free, parse(out.reply.bytes, false));
  EXPECT_EQ(r.code(), errc::protocol_error);
  EXPECT_NE(r.err().message.find("trailing"), std::string::npos) << r.err().message;
}

TEST_F(HandlersTest, IdsOfAnotherOwnerAreRefused) {
  auto a = session(1);
  auto b = session(2);
  const buffer_id buf = alloc(*a, 16 * KiB, {placement::pageable()});
  auto att = call<wire::attach_reply>(*a, wire::attach_request{.buffer = buf, .device = -1,
                                                               .mode = attach_mode::pinned, .peer_capable = false});
  ASSERT_TRUE(att) << att.err().describe();
  auto fc = call<wire::fence_reply>(*a, wire::add_client_fence_request{.buffer = buf, .usage = fence_usage::read,
                                                                        .deadline_ms = 0});
  ASSERT_TRUE(fc) << fc.err().describe();

  EXPECT_EQ(call<wire::empty_body>(*b, wire::free_request{.id = buf}).code(), errc::not_found);
  EXPECT_EQ(call<wire::empty_body>(*b, wire::share_request{.buffer = buf, .with = 2}).code(), errc::not_found);
  EXPECT_EQ(route_request(*b, wire::export_request{.id = buf}).reply.fd.get(), -1);
  EXPECT_EQ(call<wire::attach_reply>(*b, wire::attach_request{.buffer = buf, .device = -1,
                                                              .mode = attach_mode::pinned, .peer_capable = false})
                .code(),
            errc::not_found);
  EXPECT_EQ(call<wire::map_reply>(*b, wire::map_request{.attachment = att->attachment}).code(), errc::not_found);
  EXPECT_EQ(call<wire::empty_body>(*b, wire::detach_request{.id = att->attachment}).code(), errc::not_found);
  EXPECT_EQ(call<wire::cpu_begin_reply>(*b, wire::cpu_begin_request{.buffer = buf, .write = false, .timeout_ms = 1})
                .code(),
            errc::not_found);
  EXPECT_EQ(call<wire::fence_reply>(*b, wire::add_client_fence_request{.buffer = buf, .usage = fence_usage::read,
                                                                        .deadline_ms = 0})
                .code(),
            errc::not_found);
  EXPECT_EQ(call<wire::validate_reply>(*b, wire::validate_request{.buffers = {buf}}).code(), errc::not_found);
  // Fence ids are per session: a's fence id means nothing to b.
  EXPECT_EQ(call<wire::empty_body>(*b, wire::signal_client_fence_request{.fence = fc->fence, .error = 0}).code(),
            errc::not_found);
  EXPECT_EQ(route_request(*b, wire::wait_request{.fence = fc->fence, .timeout_ms = 0}).wait.has_value(), false);
  // And a's objects are untouched.
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::signal_client_fence_request{.fence = fc->fence, .error = 0}));
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::detach_request{.id = att->attachment}));
  EXPECT_TRUE(call<wire::empty_body>(*a, wire::free_request{.id = buf}));
}

TEST_F(HandlersTest, DynamicImporterGetsMoveNotifyWhenEvicted) {
  auto a = session(1);
  auto b = session(2);
  const buffer_id victim = alloc(*a, 512 * KiB, {placement::vram(0), placement::pinned()});
  auto att = call<wire::attach_reply>(*a, wire::attach_request{.buffer = victim, .device = 0,
                                                               .mode = attach_mode::dynamic, .peer_capable = false});
  ASSERT_TRUE(att) << att.err().describe();
  // 1 MiB of VRAM: 768 KiB fits only once the victim left.
  alloc(*b, 768 * KiB, {placement::vram(0)});
  ASSERT_EQ(events_of_type(wire::msg_type::move_notify), 1u);
  std::lock_guard lock(events_mutex);
  for (const auto& e : events) {
    if (e.header.type != static_cast<std::uint16_t>(wire::msg_type::move_notify)) continue;
    auto ev = wire::decode_message<wire::move_notify_event>(e);
    ASSERT_TRUE(ev) << ev.err().describe();
    EXPECT_EQ(ev->attachment, att->attachment);
    EXPECT_EQ(ev->buffer, victim);
    EXPECT_EQ(ev->from, placement::vram(0));
    EXPECT_EQ(ev->to, placement::pinned());
  }
}

TEST_F(HandlersTest, CancelledSessionEndsItsBlockingCall) {
  auto a = session(1);
  const buffer_id buf = alloc(*a, 16 * KiB, {placement::pinned()});
  ASSERT_TRUE(call<wire::fence_reply>(*a, wire::add_client_fence_request{.buffer = buf, .usage = fence_usage::write,
                                                                          .deadline_ms = 0}));
  a->cancel.cancel();
  // A read waits for the never-signaled writer fence: only the token ends it.
  auto r = call<wire::cpu_begin_reply>(*a, wire::cpu_begin_request{.buffer = buf, .write = false, .timeout_ms = 0});
  EXPECT_EQ(r.code(), errc::cancelled);
}

// ---------------------------------------------------------------------------
// Visibility (issue 9, item 11) and bounded replies (item 8).

// A uid no test runs as: the daemon's own uid in these tests, so only root
// (uid 0) is the operator unless a test says otherwise.
constexpr std::uint32_t daemon_uid_of_tests = 4242;

// The reply bytes of a stats request, and the reply decoded.
struct stats_bytes {
  std::vector<std::uint8_t> bytes;
  result<wire::stats_reply> reply = fail(errc::bad_state, "not asked");
};

TEST(StatsViewTest, OperatorIsRootOrTheDaemonsUidTenantsSeeTheirUidUnknownSeesNothing) {
  const auto rec = [](std::uint32_t uid) {
    return std::optional<client_record>(client_record{.owner = 1, .pid = 1, .uid = uid, .gid = uid, .name = {}});
  };
  EXPECT_EQ(view_for(rec(0), 1000), stats_view::everything);
  EXPECT_EQ(view_for(rec(1000), 1000), stats_view::everything);
  EXPECT_EQ(view_for(rec(1001), 1000), stats_view::tenant);
  EXPECT_EQ(view_for(rec(65534), 0), stats_view::tenant);
  EXPECT_EQ(view_for(std::nullopt, 1000), stats_view::tenant) << "no credentials: fail closed";
  EXPECT_TRUE(visible_to(rec(0), 1000, rec(65534)));
  EXPECT_TRUE(visible_to(rec(1000), 1000, rec(7)));
  EXPECT_TRUE(visible_to(rec(7), 1000, rec(7))) << "a tenant sees its own uid's clients";
  EXPECT_FALSE(visible_to(rec(7), 1000, rec(8)));
  EXPECT_FALSE(visible_to(rec(7), 1000, rec(0))) << "nor root's";
  EXPECT_FALSE(visible_to(rec(7), 1000, std::nullopt)) << "nor a client that left";
  EXPECT_FALSE(visible_to(std::nullopt, 1000, rec(7)));
}

// Before: every client's stats listed every tenant: the other tenant's
// client row (name, pid, uid) and its buffers (id, name, size) - the
// tenant's lists had 4 clients and 3 buffers, not 2 and 2, and the reply
// held "tenant-b-secret" and "b-private-buffer".
TEST_F(HandlersTest, StatsShowATenantOnlyItsOwnAndTheOperatorEverything) {
  client_name = "tenant-a";
  auto a = session(1, true, 1000);
  client_name = "tenant-b-secret";
  auto b = session(2, true, 2000);
  client_name = "operator";
  auto op = session(3, true, 0);
  client_name = "tenant-a-worker";  // another connection of a's uid
  auto aw = session(4, true, 1000);
  for (auto* c : {a.get(), b.get(), op.get(), aw.get()}) c->daemon_uid = daemon_uid_of_tests;
  const buffer_id a1 = alloc(*a, 16 * KiB, {placement::pageable()});
  const buffer_id a2 = alloc(*aw, 8 * KiB, {placement::vram(0)});
  auto hidden = call<wire::buffer_reply>(*b, wire::alloc_request{.size = 48 * KiB, .alignment = 0,
                                                                  .placements = {placement::vram(0)}, .flags = 0,
                                                                  .name = "b-private-buffer"});
  ASSERT_TRUE(hidden) << hidden.err().describe();

  // The tenant: its own row and buffers; totals that include b's bytes.
  const route_outcome out = route_request(*a, wire::stats_request{});
  const std::string raw(out.reply.bytes.begin(), out.reply.bytes.end());
  EXPECT_EQ(raw.find("tenant-b-secret"), std::string::npos) << "another tenant's name in the reply";
  EXPECT_EQ(raw.find("b-private-buffer"), std::string::npos) << "another tenant's buffer name in the reply";
  EXPECT_EQ(raw.find("operator"), std::string::npos);
  auto s = wire::decode_reply<wire::stats_reply>(wire::msg_type::stats, parse(out.reply.bytes, false));
  ASSERT_TRUE(s) << s.err().describe();
  EXPECT_TRUE(s->tenant_view);
  ASSERT_EQ(s->clients.size(), 2u) << "its own connection and its uid's other one";
  EXPECT_EQ(s->clients[0].owner, 1u);
  EXPECT_EQ(s->clients[0].name, "tenant-a");
  EXPECT_EQ(s->clients[0].uid, 1000u);
  EXPECT_EQ(s->clients[0].bytes, 16 * KiB);
  EXPECT_EQ(s->clients[1].owner, 4u);
  EXPECT_EQ(s->clients[1].bytes, 8 * KiB);
  EXPECT_EQ(s->more_clients, 0u) << "a tenant is not told how many others there are";
  ASSERT_EQ(s->buffers.size(), 2u);
  for (const auto& buf : s->buffers) {
    EXPECT_TRUE(buf.owner == 1u || buf.owner == 4u) << buf.owner;
    EXPECT_NE(buf.id, hidden->buffer);
    EXPECT_TRUE(buf.id == a1 || buf.id == a2) << buf.id;
  }
  EXPECT_EQ(s->more_buffers, 0u);
  std::uint64_t vram0_used = 0;
  for (const auto& d : s->domains) {
    if (d.where == placement::vram(0)) vram0_used = d.used;
  }
  EXPECT_GE(vram0_used, 56 * KiB) << "domain totals count every tenant's bytes";
  EXPECT_FALSE(s->counters.empty());

  // The operator (root): everything, as before.
  auto all = call<wire::stats_reply>(*op, wire::stats_request{});
  ASSERT_TRUE(all) << all.err().describe();
  EXPECT_FALSE(all->tenant_view);
  EXPECT_EQ(all->clients.size(), 4u);
  EXPECT_EQ(all->buffers.size(), 3u);
  bool saw_b = false;
  for (const auto& c : all->clients) saw_b = saw_b || (c.name == "tenant-b-secret" && c.uid == 2000u);
  EXPECT_TRUE(saw_b);

  // The daemon's own uid is the operator too; the same tenant b is not
  // once the daemon runs as someone else.
  b->daemon_uid = 2000;
  auto as_daemon = call<wire::stats_reply>(*b, wire::stats_request{});
  ASSERT_TRUE(as_daemon);
  EXPECT_FALSE(as_daemon->tenant_view);
  EXPECT_EQ(as_daemon->buffers.size(), 3u);
  b->daemon_uid = daemon_uid_of_tests;
  auto as_tenant = call<wire::stats_reply>(*b, wire::stats_request{});
  ASSERT_TRUE(as_tenant);
  EXPECT_TRUE(as_tenant->tenant_view);
  ASSERT_EQ(as_tenant->buffers.size(), 1u);
  EXPECT_EQ(as_tenant->buffers[0].id, hidden->buffer);
}

// A session the registry does not list (credentials unknown) is a tenant.
TEST_F(HandlersTest, StatsOfAnUnlistedClientIsTheTenantView) {
  auto a = session(1, true, 0);
  auto ghost = session(9, true, 0);
  (void)clients.remove(9);
  ghost->daemon_uid = daemon_uid_of_tests;
  alloc(*a, 4 * KiB, {placement::pageable()});
  auto s = call<wire::stats_reply>(*ghost, wire::stats_request{});
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->tenant_view);
  EXPECT_TRUE(s->clients.empty());
  EXPECT_TRUE(s->buffers.empty());
}

// Before: the reply listed every client (2,001 clients: 184,520 bytes, past
// max_payload) and buffers until a byte budget ran out, without counts.
TEST_F(HandlersTest, StatsStayOneFrameWithMoreClientsAndBuffersThanTheCaps) {
  auto op = session(1, true, 0);
  constexpr std::size_t extra_clients = 2000;
  for (std::size_t i = 0; i < extra_clients; ++i) {
    const auto o = static_cast<owner_id>(100 + i);
    clients.add(client_record{.owner = o, .pid = 7, .uid = 1000, .gid = 1000,
                              .name = std::string(wire::max_name_bytes, 'c')},
                nullptr);
  }
  constexpr std::size_t buffers = wire::max_stat_buffers + 116;
  for (std::size_t i = 0; i < buffers; ++i) {
    auto r = call<wire::buffer_reply>(*op, wire::alloc_request{.size = 4 * KiB, .alignment = 0,
                                                               .placements = {placement::pageable()}, .flags = 0,
                                                               .name = std::string(wire::max_name_bytes, 'n')});
    ASSERT_TRUE(r) << r.err().describe();
  }
  const route_outcome out = route_request(*op, wire::stats_request{});
  EXPECT_LE(out.reply.bytes.size(), wire::header_size + wire::max_payload);
  auto s = wire::decode_reply<wire::stats_reply>(wire::msg_type::stats, parse(out.reply.bytes, false));
  ASSERT_TRUE(s) << s.err().describe();
  EXPECT_EQ(s->clients.size(), wire::max_stat_clients);
  EXPECT_EQ(s->more_clients, extra_clients + 1 - wire::max_stat_clients);
  EXPECT_EQ(s->buffers.size(), wire::max_stat_buffers);
  EXPECT_EQ(s->more_buffers, 116u);
  EXPECT_TRUE(s->buffers_truncated);
  std::printf("stats with %zu clients and %zu buffers: %zu bytes\n", extra_clients + 1, buffers,
              out.reply.bytes.size());
}

// Before: the 13,000 placements reached the manager and its error reply
// (78,075 bytes in the issue) named each of them.
TEST_F(HandlersTest, AllocWithTooManyPlacementsIsAShortInvalidArgument) {
  auto a = session(1);
  std::vector<placement> many(13000, placement::vram(0));
  const route_outcome out = route_request(
      *a, wire::alloc_request{.size = 4 * KiB, .alignment = 0, .placements = many, .flags = 0, .name = "x"});
  EXPECT_LT(out.reply.bytes.size(), 256u);
  auto r = wire::decode_reply<wire::buffer_reply>(wire::msg_type::alloc, parse(out.reply.bytes, false));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("13000 placements, at most 16"), std::string::npos) << r.err().message;
  EXPECT_NE(r.err().message.find("placements"), std::string::npos);
  EXPECT_TRUE(sim.mm->buffers().empty());
}

// Before: the map reply's range was the daemon's host pointer for the
// buffer (e.g. 0x7f3a...), far beyond the export's size.
TEST_F(HandlersTest, MapRepliesCarryOffsetsWithinTheExportNotDaemonAddresses) {
  auto a = session(1);
  constexpr std::uint64_t size = 16 * KiB;
  // A second buffer first, so this one is not at the start of its heap.
  alloc(*a, 8 * KiB, {placement::pageable()});
  const buffer_id buf = alloc(*a, size, {placement::pageable()});
  auto att = call<wire::attach_reply>(*a, wire::attach_request{.buffer = buf, .device = -1,
                                                               .mode = attach_mode::pinned, .peer_capable = false});
  ASSERT_TRUE(att) << att.err().describe();
  auto m = call<wire::map_reply>(*a, wire::map_request{.attachment = att->attachment});
  ASSERT_TRUE(m) << m.err().describe();
  ASSERT_EQ(m->ranges.size(), 1u);

  route_outcome ex = route_request(*a, wire::export_request{.id = buf});
  ASSERT_TRUE(ex.reply.fd);
  auto e = wire::decode_reply<wire::export_reply>(wire::msg_type::export_fd, parse(ex.reply.bytes, false));
  ASSERT_TRUE(e) << e.err().describe();
  const wire::wire_range& r = m->ranges[0];
  EXPECT_EQ(r.size, size);
  EXPECT_LT(r.offset, e->size) << "not an offset within the export: " << r.offset;
  EXPECT_LE(r.offset + r.size, e->size);
  EXPECT_EQ(e->offset + r.offset, e->offset) << "the one range starts where the export does";

  // Not the daemon's pointer, and it locates the buffer's bytes: what the
  // daemon writes through its own mapping is at export offset + offset.
  auto cpu = sim.mm->begin_cpu_access(1, buf, cpu_access_mode::write);
  ASSERT_TRUE(cpu) << cpu.err().describe();
  EXPECT_NE(r.offset, reinterpret_cast<std::uint64_t>(cpu->data));
  std::memset(cpu->data, 0x5a, size);
  ASSERT_TRUE(sim.mm->end_cpu_access(1, buf));
  std::vector<std::uint8_t> got(size);
  ASSERT_EQ(::pread(ex.reply.fd.get(), got.data(), size, static_cast<off_t>(e->offset + r.offset)),
            static_cast<ssize_t>(size));
  EXPECT_EQ(got, std::vector<std::uint8_t>(size, 0x5a));
}

// An alloc whose placement is full waits on the session for the evictions it
// started and then lands where it asked first - not in the later placement
// that had room at once, with its evictions wasted.
TEST_F(HandlersTest, AllocIntoFullVramWaitsForItsEvictionsAndLandsInVram) {
  auto other = session(3);
  const auto vram = sim.domain("vram0").capacity;
  std::vector<buffer_id> filler;
  for (std::uint64_t used = 0; used + 256 * KiB <= vram; used += 256 * KiB) {
    filler.push_back(alloc(*other, 256 * KiB, {placement::vram(0)}));
  }
  ASSERT_TRUE(sim.sim->set_fence_delay(0, std::chrono::milliseconds(30)));  // moves take a while
  auto ctx = session(4);
  const buffer_id b = alloc(*ctx, 256 * KiB, {placement::vram(0), placement::pageable()});
  ASSERT_NE(b, 0u);
  EXPECT_EQ(sim.where(4, b).kind, memory_kind::device) << "the alloc took the later placement";
  ASSERT_TRUE(sim.sim->set_fence_delay(0, fence_clock::duration::zero()));
}

}  // namespace
}  // namespace xbuf::server
