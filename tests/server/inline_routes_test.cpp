// SPDX-License-Identifier: MIT
//
// Requests answered on the session (try_route), without the trip to the
// worker pool: they must answer exactly what the pool would, decline -
// doing nothing - whatever would have to wait, and never wait for a lock
// another tenant can hold. Real memory manager over the sim backend, no
// sockets (as handlers_test).
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "server/handlers.hpp"
#include "tests/common/sim_manager.hpp"

namespace xbuf::server {
namespace {

using test::KiB;
using namespace std::chrono_literals;

wire::frame parse(const std::vector<std::uint8_t>& bytes, bool requests) {
  wire::frame_parser p(requests);
  p.feed(bytes);
  auto r = p.next();
  EXPECT_EQ(r.status, wire::parse_status::complete) << r.error;
  return r.frame_;
}

template <class M>
wire::frame frame_of(const M& m, std::uint64_t id = 41) {
  return parse(wire::encode_message(id, m), true);
}

wire::alloc_request alloc_of(std::uint64_t size, std::vector<placement> where, std::uint32_t flags = 0,
                             std::uint64_t alignment = 0) {
  return wire::alloc_request{.size = size, .alignment = alignment, .placements = std::move(where), .flags = flags,
                             .name = "t"};
}

struct InlineRoutesTest : ::testing::Test {
  test::sim_manager sim;
  logger log{false};
  client_registry clients;
  std::vector<owner_id> owners;

  void TearDown() override {
    for (owner_id o : owners) sim.mm->release_owner(o);
  }

  std::unique_ptr<session_context> session(owner_id owner) {
    owners.push_back(owner);
    clients.add(client_record{.owner = owner, .pid = static_cast<std::int32_t>(1000 + owner), .uid = 0, .gid = 0,
                              .name = {}},
                nullptr);
    auto ctx = std::make_unique<session_context>(*sim.mm, clients, log, owner, [](std::vector<std::uint8_t>) {});
    auto h = inline_call<wire::hello_reply>(*ctx, wire::hello_request{.client_name = "inline"});
    EXPECT_TRUE(h && *h) << "hello is answered on the session";
    return ctx;
  }

  // The request tried on the session: nullopt when it declined, else the
  // reply as the client decodes it.
  template <class R, class M>
  std::optional<result<R>> inline_call(session_context& ctx, const M& m) {
    const wire::frame f = frame_of(m);
    auto out = try_route(find_route(f.header.type), ctx, f);
    if (!out) return std::nullopt;
    EXPECT_FALSE(out->wait);
    return wire::decode_reply<R>(M::type, parse(out->reply.bytes, false));
  }

  // The request run as the pool runs it (reruns waited for here).
  template <class R, class M>
  result<R> pool_call(session_context& ctx, const M& m) {
    const wire::frame f = frame_of(m);
    route_outcome out = run_route(find_route(f.header.type), ctx, f);
    while (out.wait && out.wait->rerun) {
      (void)out.wait->fence->wait(std::chrono::milliseconds(out.wait->timeout_ms), &ctx.cancel);
      out = run_route(find_route(f.header.type), ctx, f);
    }
    return wire::decode_reply<R>(M::type, parse(out.reply.bytes, false));
  }

  buffer_id inline_alloc(session_context& ctx, std::uint64_t size, std::vector<placement> where) {
    auto r = inline_call<wire::buffer_reply>(ctx, alloc_of(size, std::move(where)));
    EXPECT_TRUE(r) << "declined";
    if (!r) return 0;
    EXPECT_TRUE(*r) << r->err().describe();
    return *r ? (*r)->buffer : 0;
  }

  // The same frame, inline and as the pool runs it: byte for byte the
  // same reply. Only for requests whose answer does not change the state.
  template <class M>
  void expect_same_reply(session_context& ctx, const M& m) {
    const wire::frame f = frame_of(m);
    auto here = try_route(find_route(f.header.type), ctx, f);
    ASSERT_TRUE(here) << wire::type_name(f.header.type) << " declined";
    const route_outcome pool = run_route(find_route(f.header.type), ctx, f);
    EXPECT_EQ(here->reply.bytes, pool.reply.bytes) << wire::type_name(f.header.type);
  }
};

TEST_F(InlineRoutesTest, OnlyRoutesThatCannotBlockOrHaveATryRunInline) {
  auto where = [](wire::msg_type t) { return find_route(static_cast<std::uint16_t>(t)); };
  for (auto t : {wire::msg_type::alloc, wire::msg_type::free, wire::msg_type::cpu_end, wire::msg_type::stats}) {
    EXPECT_EQ(where(t)->where, run_on::pool) << wire::type_name(static_cast<std::uint16_t>(t));
    EXPECT_NE(where(t)->try_run, nullptr) << wire::type_name(static_cast<std::uint16_t>(t));
  }
  // Whatever may migrate a buffer or wait for it never runs on the session.
  for (auto t : {wire::msg_type::attach, wire::msg_type::map, wire::msg_type::validate, wire::msg_type::cpu_begin,
                 wire::msg_type::export_fd, wire::msg_type::add_client_fence, wire::msg_type::detach,
                 wire::msg_type::unmap}) {
    EXPECT_EQ(where(t)->where, run_on::pool) << wire::type_name(static_cast<std::uint16_t>(t));
    EXPECT_EQ(where(t)->try_run, nullptr) << wire::type_name(static_cast<std::uint16_t>(t));
  }
}

TEST_F(InlineRoutesTest, RequestsBeforeHelloAreRefusedInline) {
  owners.push_back(9);
  session_context ctx(*sim.mm, clients, log, 9, [](std::vector<std::uint8_t>) {});
  auto r = inline_call<wire::buffer_reply>(ctx, alloc_of(4 * KiB, {placement::pageable()}));
  ASSERT_TRUE(r) << "a refusal never blocks";
  EXPECT_EQ(r->code(), errc::bad_state);
  EXPECT_TRUE(sim.mm->buffers().empty());
  // A route that only runs on the pool is still refused here, not sent there.
  auto m = inline_call<wire::map_reply>(ctx, wire::map_request{.attachment = 1});
  ASSERT_TRUE(m);
  EXPECT_EQ(m->code(), errc::bad_state);
}

TEST_F(InlineRoutesTest, AllocWithRoomIsInlineAndOneNeedingEvictionIsLeftToThePool) {
  auto a = session(1);
  // vram0 is 1 MiB: four of these fill it, each answered inline.
  std::vector<buffer_id> bufs;
  for (int i = 0; i < 4; ++i) bufs.push_back(inline_alloc(*a, 256 * KiB, {placement::vram(0), placement::pinned()}));
  for (buffer_id b : bufs) EXPECT_EQ(sim.where(1, b), placement::vram(0));
  const auto before = sim.mm->stats().counters;

  // vram0 is full and pinned has room: only eviction can place it where
  // it prefers, so the try declines - and does nothing.
  auto declined = inline_call<wire::buffer_reply>(*a, alloc_of(256 * KiB, {placement::vram(0), placement::pinned()}));
  EXPECT_FALSE(declined) << "an alloc that needs eviction ran on the session";
  const auto after = sim.mm->stats().counters;
  EXPECT_EQ(after.allocations, before.allocations);
  EXPECT_EQ(after.evictions, before.evictions);
  EXPECT_EQ(sim.mm->buffers().size(), 4u);
  EXPECT_FALSE(a->rerun && a->rerun->pressure_until) << "no memory_pressure went out for a declined try";

  // The pool runs it as before: it evicts and places the buffer.
  auto placed = pool_call<wire::buffer_reply>(*a, alloc_of(256 * KiB, {placement::vram(0), placement::pinned()}));
  ASSERT_TRUE(placed) << placed.err().describe();
  EXPECT_EQ(sim.mm->buffers().size(), 5u);
  EXPECT_GT(sim.mm->stats().counters.evictions, before.evictions);
  EXPECT_FALSE(a->rerun) << "the alloc is done: no rerun state left behind";
}

TEST_F(InlineRoutesTest, InlineAnswersAreThePoolsByteForByte) {
  auto a = session(1);
  auto b = session(2);
  // Errors the checks give before any room is looked for.
  expect_same_reply(*a, alloc_of(4 * KiB, {placement::pageable()}, /*flags=*/0x80));
  expect_same_reply(*a, alloc_of(0, {placement::pageable()}));
  expect_same_reply(*a, alloc_of(4 * KiB, {placement::pageable()}, 0, /*alignment=*/3));
  expect_same_reply(*a, alloc_of(1ull << 40, {placement::pageable()}));
  expect_same_reply(*a, alloc_of(4 * KiB, {}));
  expect_same_reply(*a, alloc_of(4 * KiB, {placement::vram(7)}));
  // Unknown ids, another owner's, a buffer shared with the asker.
  expect_same_reply(*a, wire::free_request{.id = 12345});
  expect_same_reply(*a, wire::cpu_end_request{.id = 12345});
  const buffer_id mine = inline_alloc(*a, 16 * KiB, {placement::pageable()});
  expect_same_reply(*b, wire::free_request{.id = mine});
  ASSERT_TRUE(pool_call<wire::empty_body>(*a, wire::share_request{.buffer = mine, .with = 2}));
  expect_same_reply(*b, wire::free_request{.id = mine});
  // No CPU access begun.
  expect_same_reply(*a, wire::cpu_end_request{.id = mine});
  // Freed while attached: the second free's bad_state.
  auto att = pool_call<wire::attach_reply>(*b, wire::attach_request{.buffer = mine, .device = -1,
                                                                    .mode = attach_mode::pinned,
                                                                    .peer_capable = false});
  ASSERT_TRUE(att) << att.err().describe();
  auto freed = inline_call<wire::empty_body>(*a, wire::free_request{.id = mine});
  ASSERT_TRUE(freed && *freed);
  expect_same_reply(*a, wire::free_request{.id = mine});
  auto again = inline_call<wire::empty_body>(*a, wire::free_request{.id = mine});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->code(), errc::bad_state);
  EXPECT_NE(again->err().message.find("still attached by 1"), std::string::npos) << again->err().message;
  // stats of a small daemon.
  expect_same_reply(*a, wire::stats_request{});
  expect_same_reply(*b, wire::stats_request{});
}

TEST_F(InlineRoutesTest, CpuEndIsInline) {
  auto a = session(1);
  const buffer_id buf = inline_alloc(*a, 16 * KiB, {placement::pageable()});
  auto begun = pool_call<wire::cpu_begin_reply>(*a, wire::cpu_begin_request{.buffer = buf, .write = true,
                                                                            .timeout_ms = 0});
  ASSERT_TRUE(begun) << begun.err().describe();
  auto ended = inline_call<wire::empty_body>(*a, wire::cpu_end_request{.id = buf});
  ASSERT_TRUE(ended) << "declined";
  EXPECT_TRUE(*ended) << ended->err().describe();
  EXPECT_EQ(inline_call<wire::empty_body>(*a, wire::cpu_end_request{.id = buf})->code(), errc::bad_state);
}

// The attack: tenant b holds the reservation of a buffer a shared with it
// - here an export of it that waits, on b's thread, for b's own fence; in
// xbufd a map that migrates it and waits for room does the same - for as
// long as b likes. a's requests on that buffer must not wait for it on the
// session (the io thread serves every session): they go to the pool. And
// a's other requests are still answered on the session meanwhile.
TEST_F(InlineRoutesTest, AReservationAnotherTenantHoldsStallsNoInlineRequest) {
  auto a = session(1);
  auto b = session(2);
  const buffer_id shared = inline_alloc(*a, 64 * KiB, {placement::pageable()});
  ASSERT_TRUE(pool_call<wire::empty_body>(*a, wire::share_request{.buffer = shared, .with = 2}));
  auto f = pool_call<wire::fence_reply>(*b, wire::add_client_fence_request{.buffer = shared,
                                                                          .usage = fence_usage::kernel,
                                                                          .deadline_ms = 0});
  ASSERT_TRUE(f) << f.err().describe();

  // b's thread: export waits for the kernel fence with the reservation held.
  std::promise<void> started;
  auto holder = std::async(std::launch::async, [&] {
    started.set_value();
    auto e = sim.mm->export_fd(2, shared, std::chrono::seconds(20));
    if (e) {
      ::close(e->fd);
      (void)sim.mm->release_export(2, shared);
    }
    return e ? status(ok()) : status(e.err());
  });
  started.get_future().wait();

  // Until b's thread holds the reservation, a's free may still run (and
  // would free the buffer); so wait for the first decline - each try must
  // come back at once either way.
  std::optional<result<wire::empty_body>> freed;
  const auto give_up = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    auto end = inline_call<wire::empty_body>(*a, wire::cpu_end_request{.id = shared});
    EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "cpu_end waited on the session";
    if (!end) break;  // declined: b holds it
    ASSERT_EQ(end->code(), errc::bad_state) << "no access was begun";
    ASSERT_LT(std::chrono::steady_clock::now(), give_up) << "b's export never took the reservation";
    std::this_thread::sleep_for(1ms);
  }
  const auto t0 = std::chrono::steady_clock::now();
  freed = inline_call<wire::empty_body>(*a, wire::free_request{.id = shared});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 1s) << "free waited on the session for b's reservation";
  EXPECT_FALSE(freed) << "free of a buffer another thread holds ran on the session";

  // Meanwhile a is served inline: a new buffer, stats, hello.
  const buffer_id other = inline_alloc(*a, 16 * KiB, {placement::pageable()});
  EXPECT_NE(other, 0u);
  auto s = inline_call<wire::stats_reply>(*a, wire::stats_request{});
  ASSERT_TRUE(s) << "stats declined";
  EXPECT_TRUE(*s);
  auto h = inline_call<wire::hello_reply>(*a, wire::hello_request{.client_name = "again"});
  ASSERT_TRUE(h && *h);
  EXPECT_EQ(holder.wait_for(0s), std::future_status::timeout) << "b let go early: the test proved nothing";

  // b lets go; a's free, declined before, is answered (inline now).
  auto sig = inline_call<wire::empty_body>(*b, wire::signal_client_fence_request{.fence = f->fence, .error = 0});
  ASSERT_TRUE(sig) << "signal is a session route";
  EXPECT_TRUE(*sig) << sig->err().describe();
  auto held = holder.get();
  EXPECT_TRUE(held) << held.err().describe();
  freed = inline_call<wire::empty_body>(*a, wire::free_request{.id = shared});
  ASSERT_TRUE(freed) << "declined with nobody holding the buffer";
  EXPECT_TRUE(*freed) << freed->err().describe();
}

TEST_F(InlineRoutesTest, StatsOfADaemonWithManyBuffersIsLeftToThePool) {
  auto a = session(1);
  for (std::size_t i = 0; i <= stats_inline_buffers; ++i) {
    ASSERT_NE(inline_alloc(*a, 4 * KiB, {placement::pageable()}), 0u);
  }
  EXPECT_FALSE(inline_call<wire::stats_reply>(*a, wire::stats_request{}))
      << "a stats walking " << stats_inline_buffers + 1 << " buffers ran on the session";
  auto s = pool_call<wire::stats_reply>(*a, wire::stats_request{});
  ASSERT_TRUE(s) << s.err().describe();
  EXPECT_EQ(s->buffers.size() + s->more_buffers, stats_inline_buffers + 1);
}

}  // namespace
}  // namespace xbuf::server
