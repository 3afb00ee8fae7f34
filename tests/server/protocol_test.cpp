// SPDX-License-Identifier: MIT
//
// The wire format without sockets: every message round-trips through the
// incremental parser, and bad bytes come out as `bad` with a message that
// names what was wrong.
#include "server/protocol.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

namespace xbuf::wire {
namespace {

using bytes = std::vector<std::uint8_t>;

// Feeds `b` one byte at a time (the worst split a socket can make) and
// returns the single frame it must contain.
frame parse_one(const bytes& b, bool requests) {
  frame_parser p(requests);
  for (std::size_t i = 0; i < b.size(); ++i) {
    auto r = p.next();
    EXPECT_EQ(r.status, parse_status::need_more) << "at byte " << i << ": " << r.error;
    p.feed(std::span(&b[i], 1));
  }
  auto r = p.next();
  EXPECT_EQ(r.status, parse_status::complete) << r.error;
  EXPECT_EQ(p.next().status, parse_status::need_more);
  EXPECT_EQ(p.finish().status, parse_status::need_more);
  return r.frame_;
}

template <class M>
M round_trip(const M& m, std::uint64_t id = 42) {
  const frame f = parse_one(encode_message(id, m), true);
  EXPECT_EQ(f.header.request_id, id);
  EXPECT_EQ(f.header.type, static_cast<std::uint16_t>(M::type));
  auto d = decode_message<M>(f);
  EXPECT_TRUE(d) << d.err().describe();
  return d ? *d : M{};
}

template <class R>
result<R> reply_round_trip(msg_type req, const result<R>& r, std::uint64_t id = 7) {
  const frame f = parse_one(encode_reply(req, id, r), false);
  EXPECT_EQ(f.header.request_id, id);
  return decode_reply<R>(req, f);
}

TEST(ProtocolTest, EveryRequestRoundTrips) {
  {
    auto m = round_trip(hello_request{.version = 1, .client_name = "trainer-0"});
    EXPECT_EQ(m.version, 1u);
    EXPECT_EQ(m.client_name, "trainer-0");
  }
  {
    alloc_request a{.size = 1 << 20, .alignment = 4096,
                    .placements = {placement::vram(1), placement::pinned(), placement::pageable(),
                                   placement::pageable(3)},
                    .flags = alloc_flag_cpu_access, .name = "weights"};
    auto m = round_trip(a);
    EXPECT_EQ(m.size, a.size);
    EXPECT_EQ(m.alignment, a.alignment);
    EXPECT_EQ(m.placements, a.placements);
    EXPECT_EQ(m.flags, a.flags);
    EXPECT_EQ(m.name, a.name);
  }
  EXPECT_EQ(round_trip(free_request{.id = 9}).id, 9u);
  EXPECT_EQ(round_trip(export_request{.id = 10}).id, 10u);
  EXPECT_EQ(round_trip(detach_request{.id = 11}).id, 11u);
  EXPECT_EQ(round_trip(unmap_request{.id = 12}).id, 12u);
  EXPECT_EQ(round_trip(cpu_end_request{.id = 13}).id, 13u);
  {
    auto m = round_trip(share_request{.buffer = 5, .with = 3});
    EXPECT_EQ(m.buffer, 5u);
    EXPECT_EQ(m.with, 3u);
  }
  {
    auto m = round_trip(attach_request{.buffer = 5, .device = 1, .mode = attach_mode::pinned,
                                       .peer_capable = true});
    EXPECT_EQ(m.buffer, 5u);
    EXPECT_EQ(m.device, 1);
    EXPECT_EQ(m.mode, attach_mode::pinned);
    EXPECT_TRUE(m.peer_capable);
    EXPECT_EQ(round_trip(attach_request{.buffer = 1, .device = -1}).device, -1);
  }
  EXPECT_EQ(round_trip(map_request{.attachment = 77}).attachment, 77u);
  {
    auto m = round_trip(add_client_fence_request{.buffer = 4, .usage = fence_usage::read, .deadline_ms = 500});
    EXPECT_EQ(m.buffer, 4u);
    EXPECT_EQ(m.usage, fence_usage::read);
    EXPECT_EQ(m.deadline_ms, 500u);
  }
  {
    auto m = round_trip(signal_client_fence_request{.fence = 3, .error = -5});
    EXPECT_EQ(m.fence, 3u);
    EXPECT_EQ(m.error, -5);
  }
  {
    auto m = round_trip(wait_request{.fence = 3, .timeout_ms = 100});
    EXPECT_EQ(m.fence, 3u);
    EXPECT_EQ(m.timeout_ms, 100u);
  }
  EXPECT_EQ(round_trip(validate_request{.buffers = {1, 2, 3}}).buffers, (std::vector<std::uint64_t>{1, 2, 3}));
  {
    auto m = round_trip(cpu_begin_request{.buffer = 8, .write = true, .timeout_ms = 9});
    EXPECT_EQ(m.buffer, 8u);
    EXPECT_TRUE(m.write);
    EXPECT_EQ(m.timeout_ms, 9u);
  }
  round_trip(stats_request{});
}

TEST(ProtocolTest, RepliesCarryBodyOrStatus) {
  auto h = reply_round_trip(msg_type::hello, result<hello_reply>(hello_reply{.server_version = 1, .owner = 12}));
  ASSERT_TRUE(h) << h.err().describe();
  EXPECT_EQ(h->owner, 12u);

  auto e = reply_round_trip(msg_type::alloc,
                            result<buffer_reply>(fail(errc::out_of_memory, "vram0: full (wanted 1 MiB)")));
  ASSERT_FALSE(e);
  EXPECT_EQ(e.code(), errc::out_of_memory);
  EXPECT_EQ(e.err().message, "vram0: full (wanted 1 MiB)");

  map_reply mr{.where = placement::vram(0), .ranges = {{.offset = 0x1000, .size = 4096}}, .peer = true,
               .reason = "same switch", .generation = 3, .wait_fence = 5};
  auto m = reply_round_trip(msg_type::map, result<map_reply>(mr));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->where, placement::vram(0));
  ASSERT_EQ(m->ranges.size(), 1u);
  EXPECT_EQ(m->ranges[0].offset, 0x1000u);
  EXPECT_TRUE(m->peer);
  EXPECT_EQ(m->reason, "same switch");
  EXPECT_EQ(m->wait_fence, 5u);

  stats_reply s;
  s.backend = "sim";
  s.domains.push_back({.name = "vram0", .where = placement::vram(0), .capacity = 100, .used = 40, .buffers = 2});
  s.clients.push_back({.owner = 1, .pid = 99, .uid = 1000, .name = "job", .bytes = 40, .buffers = 2});
  s.buffers.push_back({.id = 1, .owner = 1, .name = "a", .size = 20, .where = placement::vram(0),
                       .attachments = 1, .fences = 2});
  s.counters.push_back({.name = "evictions", .value = 4});
  auto sr = reply_round_trip(msg_type::stats, result<stats_reply>(s));
  ASSERT_TRUE(sr);
  EXPECT_EQ(sr->domains[0].name, "vram0");
  EXPECT_EQ(sr->clients[0].pid, 99);
  EXPECT_EQ(sr->buffers[0].fences, 2u);
  EXPECT_EQ(sr->counters[0].value, 4u);
  EXPECT_FALSE(sr->tenant_view);
  EXPECT_EQ(sr->more_clients, 0u);

  const frame ok = parse_one(encode_reply(msg_type::free, 8, status()), false);
  EXPECT_TRUE(decode_reply<empty_body>(msg_type::free, ok));
}

TEST(ProtocolTest, EventsRoundTrip) {
  move_notify_event ev{.attachment = 3, .buffer = 4, .from = placement::vram(0), .to = placement::pinned()};
  const frame f = parse_one(encode_message(0, ev), false);
  auto d = decode_message<move_notify_event>(f);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->attachment, 3u);
  EXPECT_EQ(d->to, placement::pinned());
  const frame g = parse_one(encode_message(0, fence_signaled_event{.fence = 8, .error = -110}), false);
  auto e = decode_message<fence_signaled_event>(g);
  ASSERT_TRUE(e);
  EXPECT_EQ(e->error, -110);
  const frame h = parse_one(encode_message(0, memory_pressure_event{.where = placement::vram(1), .bytes = 4096}), false);
  EXPECT_EQ(type_name(h.header.type), "memory_pressure");
  auto p = decode_message<memory_pressure_event>(h);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->where, placement::vram(1));
  EXPECT_EQ(p->bytes, 4096u);
  // The send queue's view of encoded frames: the domain of a pressure
  // event, nothing for any other frame or for too few bytes.
  EXPECT_EQ(pressure_domain(encode_message(0, memory_pressure_event{.where = placement::vram(1), .bytes = 1})),
            placement::vram(1));
  EXPECT_FALSE(pressure_domain(encode_message(0, fence_signaled_event{.fence = 8, .error = 0})));
  EXPECT_FALSE(pressure_domain(std::vector<std::uint8_t>(3, 0)));
}

TEST(ProtocolTest, SeveralFramesInOneFeedComeOutInOrder) {
  bytes all;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    auto b = encode_message(i, free_request{.id = i * 10});
    all.insert(all.end(), b.begin(), b.end());
  }
  frame_parser p(true);
  p.feed(all);
  for (std::uint64_t i = 1; i <= 3; ++i) {
    auto r = p.next();
    ASSERT_EQ(r.status, parse_status::complete);
    EXPECT_EQ(r.frame_.header.request_id, i);
    EXPECT_EQ(decode_message<free_request>(r.frame_)->id, i * 10);
  }
  EXPECT_EQ(p.next().status, parse_status::need_more);
}

TEST(ProtocolTest, TruncatedStreamIsBadAndSaysHowMuchArrived) {
  auto b = encode_message(5, hello_request{.client_name = "x"});
  frame_parser p(true);
  p.feed(std::span(b.data(), b.size() - 2));
  EXPECT_EQ(p.next().status, parse_status::need_more);
  auto r = p.finish();
  ASSERT_EQ(r.status, parse_status::bad);
  EXPECT_NE(r.error.find("truncated frame"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("payload"), std::string::npos) << r.error;

  frame_parser q(true);
  q.feed(std::span(b.data(), 10));
  auto h = q.finish();
  ASSERT_EQ(h.status, parse_status::bad);
  EXPECT_NE(h.error.find("header"), std::string::npos) << h.error;
}

TEST(ProtocolTest, TruncatedPayloadNamesMessageAndField) {
  // A well-formed frame whose payload is too short for an alloc request.
  writer w;
  w.u64(4096);  // size; alignment and the rest missing
  frame f{.header = {.type = static_cast<std::uint16_t>(msg_type::alloc), .request_id = 1,
                     .payload_len = 8},
          .payload = w.out()};
  auto d = decode_message<alloc_request>(f);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::protocol_error);
  EXPECT_NE(d.err().message.find("alloc"), std::string::npos) << d.err().message;
  EXPECT_NE(d.err().message.find("alignment"), std::string::npos) << d.err().message;
}

TEST(ProtocolTest, LyingCountsAndTrailingBytesAreRejected) {
  writer w;
  w.u32(1000000);  // validate: a million ids in 4 bytes
  frame f{.header = {.type = static_cast<std::uint16_t>(msg_type::validate)}, .payload = w.out()};
  auto d = decode_message<validate_request>(f);
  ASSERT_FALSE(d);
  EXPECT_NE(d.err().message.find("count 1000000"), std::string::npos) << d.err().message;

  writer t;
  t.u64(1);
  t.u8(0xff);
  frame g{.header = {.type = static_cast<std::uint16_t>(msg_type::free)}, .payload = t.out()};
  auto e = decode_message<free_request>(g);
  ASSERT_FALSE(e);
  EXPECT_NE(e.err().message.find("trailing"), std::string::npos) << e.err().message;
}

TEST(ProtocolTest, OutOfRangeEnumIsRejectedWithItsField) {
  writer w;
  w.u64(1);      // buffer
  w.u32(0);      // device
  w.u8(9);       // mode: no such attach_mode
  w.u8(0);
  frame f{.header = {.type = static_cast<std::uint16_t>(msg_type::attach)}, .payload = w.out()};
  auto d = decode_message<attach_request>(f);
  ASSERT_FALSE(d);
  EXPECT_NE(d.err().message.find("mode"), std::string::npos) << d.err().message;
  EXPECT_NE(d.err().message.find("out of range"), std::string::npos) << d.err().message;
}

TEST(ProtocolTest, AdviseCarriesItsHintAndRefusesOneOutOfRange) {
  auto m = round_trip(advise_request{.id = 42, .hint = eviction_hint::keep});
  EXPECT_EQ(m.id, 42u);
  EXPECT_EQ(m.hint, eviction_hint::keep);
  EXPECT_EQ(type_name(static_cast<std::uint16_t>(msg_type::advise)), "advise");
  writer w;
  w.u64(42);
  w.u8(3);  // no such eviction_hint
  frame f{.header = {.type = static_cast<std::uint16_t>(msg_type::advise)}, .payload = w.out()};
  auto d = decode_message<advise_request>(f);
  ASSERT_FALSE(d);
  EXPECT_NE(d.err().message.find("hint"), std::string::npos) << d.err().message;
  EXPECT_NE(d.err().message.find("out of range"), std::string::npos) << d.err().message;
}

TEST(ProtocolTest, GarbageIsBadWithoutARequestId) {
  bytes junk(64, 0xab);
  frame_parser p(true);
  p.feed(junk);
  auto r = p.next();
  ASSERT_EQ(r.status, parse_status::bad);
  EXPECT_NE(r.error.find("bad magic"), std::string::npos) << r.error;
  EXPECT_FALSE(r.request_id.has_value());
  EXPECT_EQ(p.next().status, parse_status::bad);  // bad is final
}

TEST(ProtocolTest, OversizedFrameIsBadBeforeItsPayloadArrives) {
  auto b = encode_frame(static_cast<std::uint16_t>(msg_type::alloc), 77, {});
  const std::uint32_t huge = max_payload + 1;
  std::memcpy(b.data() + 16, &huge, 4);  // little-endian host (x86/arm64)
  frame_parser p(true);
  p.feed(b);
  auto r = p.next();
  ASSERT_EQ(r.status, parse_status::bad);
  EXPECT_NE(r.error.find("oversized"), std::string::npos) << r.error;
  ASSERT_TRUE(r.request_id.has_value());
  EXPECT_EQ(*r.request_id, 77u);
}

TEST(ProtocolTest, UnknownTypeIsBadAndKeepsTheRequestId) {
  auto b = encode_frame(0x7777, 31, {});
  frame_parser p(true);
  p.feed(b);
  auto r = p.next();
  ASSERT_EQ(r.status, parse_status::bad);
  EXPECT_NE(r.error.find("unknown message type 0x7777"), std::string::npos) << r.error;
  EXPECT_EQ(r.request_id, 31u);
  EXPECT_EQ(r.type, 0x7777);

  // A reply type is not a request: the daemon's parser refuses it.
  auto reply = encode_reply(msg_type::free, 1, status());
  frame_parser q(true);
  q.feed(reply);
  EXPECT_EQ(q.next().status, parse_status::bad);
  // And the client's parser refuses requests.
  frame_parser c(false);
  c.feed(encode_message(1, free_request{.id = 1}));
  EXPECT_EQ(c.next().status, parse_status::bad);
}

TEST(ProtocolTest, BadVersionAndReservedAreBad) {
  auto b = encode_message(3, stats_request{});
  b[4] = 9;  // version 9
  frame_parser p(true);
  p.feed(b);
  auto r = p.next();
  ASSERT_EQ(r.status, parse_status::bad);
  EXPECT_NE(r.error.find("unsupported protocol version 9"), std::string::npos) << r.error;

  auto c = encode_message(3, stats_request{});
  c[20] = 1;
  frame_parser q(true);
  q.feed(c);
  auto s = q.next();
  ASSERT_EQ(s.status, parse_status::bad);
  EXPECT_NE(s.error.find("reserved"), std::string::npos) << s.error;
}

TEST(ProtocolTest, ErrorReplyToUnknownTypeDecodesAsItsStatus) {
  auto b = encode_error_reply(0x7777, 31, fail(errc::protocol_error, "unknown message type 0x7777"));
  frame_parser p(false);
  p.feed(b);
  // 0x7777|reply_bit is not a known reply: a client treats it as bad, which
  // is right - it never sent such a request.
  EXPECT_EQ(p.next().status, parse_status::bad);
  // For a known request type the error reply is an ordinary error status.
  auto k = encode_error_reply(static_cast<std::uint16_t>(msg_type::alloc), 4, fail(errc::bad_state, "no hello"));
  const frame f = parse_one(k, false);
  auto d = decode_reply<buffer_reply>(msg_type::alloc, f);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::bad_state);
}

// ---------------------------------------------------------------------------
// Every message fits one frame (issue 9, item 8).

// The largest stats reply the caps allow: every list at its cap, every
// string at its longest, every number at its widest.
stats_reply worst_case_stats() {
  stats_reply s;
  s.backend = std::string(max_stat_label_bytes, 'b');
  for (std::size_t i = 0; i < max_stat_domains; ++i) {
    s.domains.push_back({.name = std::string(max_stat_label_bytes, 'd'), .where = placement::vram(7),
                         .capacity = UINT64_MAX, .used = UINT64_MAX, .delayed_free_bytes = UINT64_MAX,
                         .buffers = UINT32_MAX, .peak_used = UINT64_MAX});
  }
  for (std::size_t i = 0; i < max_stat_clients; ++i) {
    s.clients.push_back({.owner = UINT32_MAX, .pid = -1, .uid = UINT32_MAX,
                         .name = std::string(max_name_bytes, 'c'), .bytes = UINT64_MAX, .buffers = UINT32_MAX});
  }
  for (std::size_t i = 0; i < max_stat_buffers; ++i) {
    s.buffers.push_back({.id = UINT64_MAX, .owner = UINT32_MAX, .name = std::string(max_name_bytes, 'n'),
                         .size = UINT64_MAX, .where = placement::pinned(), .attachments = UINT32_MAX, .pins = -1,
                         .fences = UINT32_MAX, .generation = UINT64_MAX, .lost = true});
  }
  for (std::size_t i = 0; i < max_stat_counters; ++i) {
    s.counters.push_back({.name = std::string(max_stat_label_bytes, 'k'), .value = UINT64_MAX});
  }
  s.buffers_truncated = true;
  s.tenant_view = true;
  s.more_clients = UINT32_MAX;
  s.more_buffers = UINT32_MAX;
  return s;
}

// Before: no caps - with 2,001 clients the reply was 184,520 bytes, more
// than max_payload, and every client's parser refused it. Now the worst
// case the caps allow is computed from the field sizes (static_asserted
// below one frame) and this checks the computation against the encoder.
TEST(ProtocolTest, WorstCaseStatsReplyIsTheComputedSizeAndFitsOneFrame) {
  const bytes b = encode_reply(msg_type::stats, 3, result<stats_reply>(worst_case_stats()));
  ASSERT_GE(b.size(), header_size);
  EXPECT_EQ(b.size() - header_size, stats_reply_max_bytes)
      << "a stats row changed: update wire_size in protocol.hpp";
  EXPECT_LE(stats_reply_max_bytes, max_payload);
  std::printf("worst-case stats reply: %zu bytes of %zu (%zu clients, %zu buffers)\n", stats_reply_max_bytes,
              max_payload, max_stat_clients, max_stat_buffers);
  auto d = decode_reply<stats_reply>(msg_type::stats, parse_one(b, false));
  ASSERT_TRUE(d) << d.err().describe();
  EXPECT_EQ(d->clients.size(), max_stat_clients);
  EXPECT_EQ(d->buffers.size(), max_stat_buffers);
  EXPECT_EQ(d->more_buffers, UINT32_MAX);
}

// Before: encode_reply framed whatever it was given; a reply past
// max_payload went out as a frame every client must reject (or tripped the
// assert in a debug build). Now it becomes an error reply that fits.
TEST(ProtocolTest, ABodyThatWouldNotFitBecomesAnErrorReply) {
  stats_reply s;
  for (int i = 0; i < 2001; ++i) {
    s.clients.push_back({.owner = static_cast<std::uint32_t>(i), .pid = i, .uid = 1000,
                         .name = std::string(64, 'x'), .bytes = 4096, .buffers = 1});
  }
  const bytes b = encode_reply(msg_type::stats, 9, result<stats_reply>(s));
  ASSERT_LE(b.size(), header_size + max_payload);
  auto d = decode_reply<stats_reply>(msg_type::stats, parse_one(b, false));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::io_error);
  EXPECT_NE(d.err().message.find("more than one frame holds"), std::string::npos) << d.err().message;
}

// Before: an error message was sent whole - 13,000 placements named in an
// out_of_memory message made a 78,075-byte reply.
TEST(ProtocolTest, LongErrorMessagesAreCutToFitOneFrame) {
  const std::string huge(100'000, 'm');
  const bytes b = encode_reply(msg_type::alloc, 4, result<buffer_reply>(fail(errc::out_of_memory, huge)));
  ASSERT_LE(b.size(), header_size + max_payload);
  auto d = decode_reply<buffer_reply>(msg_type::alloc, parse_one(b, false));
  ASSERT_FALSE(d);
  EXPECT_EQ(d.code(), errc::out_of_memory);
  EXPECT_EQ(d.err().message.size(), max_error_message_bytes + 3);
  EXPECT_EQ(d.err().message.substr(max_error_message_bytes), "...");
  const bytes e = encode_error_reply(static_cast<std::uint16_t>(msg_type::free), 5, error(errc::not_found, huge));
  EXPECT_LE(e.size(), header_size + max_payload);
}

template <class M>
result<M> decode_request(const M& m) {
  return decode_message<M>(parse_one(encode_message(11, m), true));
}

// Before: requests had no caps; the 13,000 placements decoded and the
// manager's error named each of them.
TEST(ProtocolTest, RequestsPastTheirCapsAreInvalidArgumentNamingTheField) {
  alloc_request a{.size = 4096, .alignment = 0, .placements = {}, .flags = 0, .name = "x"};
  a.placements.assign(13000, placement::pageable());
  auto r = decode_request(a);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_EQ(r.err().message, "alloc: 13000 placements, at most 16 (field 'placements')");
  a.placements.resize(max_placements);
  EXPECT_TRUE(decode_request(a)) << "the cap itself is allowed";

  a.name = std::string(max_name_bytes + 1, 'n');
  r = decode_request(a);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.code(), errc::invalid_argument);
  EXPECT_NE(r.err().message.find("field 'name'"), std::string::npos) << r.err().message;
  a.name.resize(max_name_bytes);
  EXPECT_TRUE(decode_request(a));

  validate_request v;
  v.buffers.assign(max_validate_buffers + 1, 7);
  auto vr = decode_request(v);
  ASSERT_FALSE(vr);
  EXPECT_EQ(vr.code(), errc::invalid_argument);
  EXPECT_NE(vr.err().message.find("validate: 1025 buffers, at most 1024"), std::string::npos) << vr.err().message;
  v.buffers.resize(max_validate_buffers);
  EXPECT_TRUE(decode_request(v));

  hello_request h{.version = protocol_version, .client_name = std::string(max_client_name_bytes + 1, 'h')};
  auto hr = decode_request(h);
  ASSERT_FALSE(hr);
  EXPECT_NE(hr.err().message.find("field 'client_name'"), std::string::npos) << hr.err().message;
  h.client_name.resize(max_client_name_bytes);
  EXPECT_TRUE(decode_request(h));
}

}  // namespace
}  // namespace xbuf::wire
