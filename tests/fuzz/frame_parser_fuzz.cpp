// SPDX-License-Identifier: MIT
//
// frame_parser_fuzz.cpp - arbitrary bytes, in arbitrary chunkings, through
// wire::frame_parser and the payload decoders (server/protocol.hpp).
//
// Overview
//   The input (fuzz_support.hpp) is a side, a chunking seed and a byte
//   stream. The stream is fed to one incremental parser in chunks the seed
//   picks, and checked against a whole-stream reference parse written here
//   from the header layout in protocol.hpp, so that a chunking which
//   changes the outcome is caught, not only a crash:
//     - the frames are the reference's frames, in order, each with exactly
//       header.payload_len payload bytes, equal to the stream's bytes;
//     - bad comes exactly where the reference finds a bad header, with the
//       request id only when the magic was right; after it next() and
//       finish() keep answering bad with the same error;
//     - buffered() is the bytes fed minus the frames taken; finish() is
//       need_more on a clean end, else bad "truncated";
//     - each chunk is its own heap block of exactly its size, so ASan
//       reports a parser that reads past the bytes it was given.
//   Every complete frame is decoded as its own message (request, reply or
//   event) and, to reach the decoders with payloads of every shape, as one
//   more message type that the seed picks. A decode either succeeds, or
//   fails with protocol_error naming the message, or (a well-formed
//   message past a cap) with invalid_argument naming the field; a success re-encodes to
//   the same bytes wherever the codec is canonical (every request and
//   event; a reply whose status message is empty, or an error status).
//
// Rules
//   - The reference parser is independent of frame_parser: it must not call
//     into protocol.cpp beyond is_request / is_known_type (the documented
//     type ranges).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "server/protocol.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace xbuf::fuzz {
namespace {

namespace wire = xbuf::wire;

std::uint64_t load_le(std::span<const std::uint8_t> s, std::size_t at, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= std::uint64_t{s[at + static_cast<std::size_t>(i)]} << (8 * i);
  return v;
}

// ---------------------------------------------------------------------------
// The reference: the whole stream at once, straight from the header table.

struct expected_frame {
  std::size_t offset = 0;  // of its header in the stream
  wire::frame_header header;
};

struct expected_stream {
  std::vector<expected_frame> frames;
  bool bad = false;
  bool bad_id_known = false;  // the magic was right
  std::uint64_t bad_request_id = 0;
  std::uint16_t bad_type = 0;
  std::size_t leftover = 0;  // not bad: bytes of an unfinished frame at the end
};

expected_stream reference_parse(std::span<const std::uint8_t> s, bool requests) {
  expected_stream e;
  std::size_t at = 0;
  while (s.size() - at >= wire::header_size) {
    wire::frame_header h;
    const auto m = static_cast<std::uint32_t>(load_le(s, at, 4));
    h.version = static_cast<std::uint16_t>(load_le(s, at + 4, 2));
    h.type = static_cast<std::uint16_t>(load_le(s, at + 6, 2));
    h.request_id = load_le(s, at + 8, 8);
    h.payload_len = static_cast<std::uint32_t>(load_le(s, at + 16, 4));
    const auto reserved = static_cast<std::uint32_t>(load_le(s, at + 20, 4));
    const bool type_ok = requests ? wire::is_request(h.type)
                                  : (wire::is_known_type(h.type) && !wire::is_request(h.type));
    if (m != wire::magic || h.version != wire::protocol_version || reserved != 0 ||
        h.payload_len > wire::max_payload || !type_ok) {
      e.bad = true;
      e.bad_id_known = m == wire::magic;
      e.bad_request_id = h.request_id;
      e.bad_type = h.type;
      return e;
    }
    if (s.size() - at - wire::header_size < h.payload_len) break;  // the last frame is unfinished
    e.frames.push_back({at, h});
    at += wire::header_size + h.payload_len;
  }
  e.leftover = s.size() - at;
  return e;
}

// ---------------------------------------------------------------------------
// Decoders: each message type once, as a check function.

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.rfind(prefix, 0) == 0;
}

// A request or event payload decoded as M (the frame's type forged to M's).
template <class M>
void check_message(const wire::frame& original) {
  wire::frame f = original;
  f.header.type = static_cast<std::uint16_t>(M::type);
  auto r = wire::decode_message<M>(f);
  if (!r) {
    // protocol_error for bytes that are not the message; invalid_argument
    // for a well-formed message past one of its caps, naming the field.
    expect(r.code() == errc::protocol_error || r.code() == errc::invalid_argument,
           "decode_message failed with a code other than protocol_error or invalid_argument");
    expect(starts_with(r.err().message, wire::type_name(f.header.type) + ": "),
           "decode error does not name the message: " + r.err().message);
    if (r.code() == errc::invalid_argument) {
      expect(r.err().message.find("(field '") != std::string::npos,
             "a cap error does not name its field: " + r.err().message);
    }
    return;
  }
  // Canonical: bools are 0/1, enums in range, counts exact, nothing trailing.
  const auto again = wire::encode_message(f.header.request_id, *r);
  expect(again.size() == wire::header_size + f.payload.size(),
         "re-encoded request has another length");
  expect(std::equal(f.payload.begin(), f.payload.end(), again.begin() + wire::header_size),
         "re-encoded request differs from the decoded bytes");
  // And the decode of the re-encoding is the same message (bytes again).
  wire::frame_parser p(M::type <= wire::msg_type_last_request);
  p.feed(again);
  auto pr = p.next();
  expect(pr.status == wire::parse_status::complete,
         "a re-encoded message does not parse: " + pr.error);
  expect(pr.frame_.header.request_id == f.header.request_id && pr.frame_.payload == f.payload,
         "a re-encoded message parses as another frame");
}

// A reply payload decoded as the reply to `Request` with body R.
template <wire::msg_type Request, class R>
void check_reply(const wire::frame& original) {
  wire::frame f = original;
  f.header.type = static_cast<std::uint16_t>(static_cast<std::uint16_t>(Request) | wire::reply_bit);
  const std::string what = wire::type_name(f.header.type);
  // The status, read on its own, says what decode_reply must answer.
  wire::reader st(f.payload, what);
  errc code = errc::ok;
  std::string message;
  st("code", code);
  st("message", message);
  auto r = wire::decode_reply<R>(Request, f);
  if (st.failed()) {
    expect(!r && r.code() == errc::protocol_error, "an unreadable status decoded");
    expect(starts_with(r.err().message, what + ": "), "reply decode error does not name the reply");
    return;
  }
  if (code != errc::ok) {
    if (!st.at_end()) {
      expect(!r && r.code() == errc::protocol_error, "an error status with trailing bytes decoded");
      return;
    }
    // The daemon's error travels as it is, and re-encodes to the same bytes.
    expect(!r && r.code() == code && r.err().message == message,
           "an error status decoded as something else");
    const auto again = wire::encode_error_reply(f.header.type, f.header.request_id, r.err());
    expect(std::equal(f.payload.begin(), f.payload.end(), again.begin() + wire::header_size) &&
               again.size() == wire::header_size + f.payload.size(),
           "a re-encoded error status differs");
    return;
  }
  if (!r) {
    expect(r.code() == errc::protocol_error,
           "a bad reply body failed with a code other than protocol_error");
    expect(starts_with(r.err().message, what + ": "), "reply decode error does not name the reply");
    return;
  }
  // An ok status drops its message; the body alone is canonical.
  if (!message.empty()) return;
  const auto again = wire::encode_reply(Request, f.header.request_id, r);
  expect(again.size() == wire::header_size + f.payload.size() &&
             std::equal(f.payload.begin(), f.payload.end(), again.begin() + wire::header_size),
         "a re-encoded reply differs from the decoded bytes");
}

struct decoder {
  std::uint16_t type;  // the frame type this decoder reads
  void (*check)(const wire::frame&);
};

template <class M>
constexpr decoder message_decoder() {
  return {static_cast<std::uint16_t>(M::type), &check_message<M>};
}
template <wire::msg_type Request, class R>
constexpr decoder reply_decoder() {
  return {static_cast<std::uint16_t>(static_cast<std::uint16_t>(Request) | wire::reply_bit),
          &check_reply<Request, R>};
}

using wire::msg_type;
// Every message of the protocol: requests, their replies, events.
constexpr decoder decoders[] = {
    message_decoder<wire::hello_request>(),
    message_decoder<wire::alloc_request>(),
    message_decoder<wire::free_request>(),
    message_decoder<wire::share_request>(),
    message_decoder<wire::export_request>(),
    message_decoder<wire::attach_request>(),
    message_decoder<wire::detach_request>(),
    message_decoder<wire::map_request>(),
    message_decoder<wire::unmap_request>(),
    message_decoder<wire::add_client_fence_request>(),
    message_decoder<wire::signal_client_fence_request>(),
    message_decoder<wire::wait_request>(),
    message_decoder<wire::validate_request>(),
    message_decoder<wire::cpu_begin_request>(),
    message_decoder<wire::cpu_end_request>(),
    message_decoder<wire::stats_request>(),
    message_decoder<wire::import_request>(),
    message_decoder<wire::release_request>(),
    message_decoder<wire::trace_request>(),
    message_decoder<wire::advise_request>(),
    reply_decoder<msg_type::hello, wire::hello_reply>(),
    reply_decoder<msg_type::alloc, wire::buffer_reply>(),
    reply_decoder<msg_type::free, wire::empty_body>(),
    reply_decoder<msg_type::share, wire::empty_body>(),
    reply_decoder<msg_type::export_fd, wire::export_reply>(),
    reply_decoder<msg_type::attach, wire::attach_reply>(),
    reply_decoder<msg_type::detach, wire::empty_body>(),
    reply_decoder<msg_type::map, wire::map_reply>(),
    reply_decoder<msg_type::unmap, wire::empty_body>(),
    reply_decoder<msg_type::add_client_fence, wire::fence_reply>(),
    reply_decoder<msg_type::signal_client_fence, wire::empty_body>(),
    reply_decoder<msg_type::wait, wire::wait_reply>(),
    reply_decoder<msg_type::validate, wire::validate_reply>(),
    reply_decoder<msg_type::cpu_begin, wire::cpu_begin_reply>(),
    reply_decoder<msg_type::cpu_end, wire::empty_body>(),
    reply_decoder<msg_type::stats, wire::stats_reply>(),
    reply_decoder<msg_type::import_fd, wire::import_reply>(),
    reply_decoder<msg_type::release, wire::empty_body>(),
    reply_decoder<msg_type::trace, wire::trace_reply>(),
    reply_decoder<msg_type::advise, wire::empty_body>(),
    message_decoder<wire::move_notify_event>(),
    message_decoder<wire::fence_signaled_event>(),
    message_decoder<wire::memory_pressure_event>(),
};
constexpr std::size_t request_count = static_cast<std::size_t>(wire::msg_type_last_request) -
                                      static_cast<std::size_t>(wire::msg_type_first_request) + 1;
constexpr std::size_t event_count = static_cast<std::size_t>(wire::msg_type_last_event) -
                                    static_cast<std::size_t>(wire::msg_type_first_event) + 1;
static_assert(std::size(decoders) == 2 * request_count + event_count,
              "a message type without a decoder here: add it to decoders[]");

void check_decoders(const wire::frame& f, std::uint32_t seed) {
  bool own = false;
  for (const auto& d : decoders) {
    if (d.type != f.header.type) continue;
    d.check(f);
    own = true;
  }
  expect(own, "a frame the parser passed has no decoder: " + wire::type_name(f.header.type));
  // The type checks of decode_message / decode_reply themselves.
  const bool hello = f.header.type == static_cast<std::uint16_t>(msg_type::hello);
  const auto wrong =
      wire::decode_message<wire::hello_request>(hello ? wire::frame{{.type = 2}, f.payload} : f);
  expect(!wrong && starts_with(wrong.err().message, "expected hello"),
         "decode_message took another type");
  decoders[seed % std::size(decoders)].check(f);
}

// ---------------------------------------------------------------------------
// Chunking: sizes from a small PRNG, mostly tiny (every split of a header),
// sometimes whole frames, sometimes empty feeds.

class chunker {
 public:
  explicit chunker(std::uint32_t seed) : state_(seed * 2654435761u | 1u) {}
  std::size_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 17;
    state_ ^= state_ << 5;
    const std::uint32_t r = state_ >> 3;
    switch (state_ & 7) {
      case 0:
        return 0;
      case 1:
      case 2:
      case 3:
        return 1 + r % 8;
      case 4:
      case 5:
        return 1 + r % 64;
      case 6:
        return 1 + r % (wire::header_size * 2);
      default:
        return 1 + r % (wire::header_size + wire::max_payload);
    }
  }

 private:
  std::uint32_t state_;
};

void run(std::span<const std::uint8_t> data) {
  if (data.size() < 2) return;
  const bool requests = (data[0] & parser_side_requests) != 0;
  const std::uint32_t seed = (std::uint32_t{data[0]} >> 1) | (std::uint32_t{data[1]} << 7);
  const auto stream = data.subspan(2);
  const expected_stream want = reference_parse(stream, requests);

  wire::frame_parser p(requests);
  chunker chunks(seed);
  std::size_t fed = 0;
  std::size_t taken = 0;  // stream bytes of the frames taken
  std::size_t got = 0;    // frames taken
  std::string bad_error;  // set once the parser said bad
  while (bad_error.empty() && fed < stream.size()) {
    const std::size_t n = std::min(chunks.next(), stream.size() - fed);
    // Its own heap block: a read past the chunk is a heap overflow for ASan.
    const std::vector<std::uint8_t> chunk(stream.begin() + static_cast<std::ptrdiff_t>(fed),
                                          stream.begin() + static_cast<std::ptrdiff_t>(fed + n));
    p.feed(chunk);
    fed += n;
    for (;;) {
      wire::parse_result r = p.next();
      if (r.status == wire::parse_status::need_more) {
        expect(p.buffered() == fed - taken,
               "buffered() is not the bytes fed minus the frames taken");
        expect(p.next().status == wire::parse_status::need_more,
               "need_more changed without new bytes");
        break;
      }
      if (r.status == wire::parse_status::bad) {
        expect(want.bad, "bad where the reference parses: " + r.error);
        expect(got == want.frames.size(), "bad after another number of frames than the reference");
        expect(!r.error.empty(), "bad without an error");
        expect(r.request_id.has_value() == want.bad_id_known,
               "request id known where the magic was wrong, or not");
        if (r.request_id) {
          expect(*r.request_id == want.bad_request_id && r.type == want.bad_type,
                 "bad names another header");
        }
        bad_error = r.error;
        break;
      }
      expect(got < want.frames.size(), "a frame the reference does not have");
      const expected_frame& e = want.frames[got];
      const wire::frame& f = r.frame_;
      expect(f.header.type == e.header.type && f.header.request_id == e.header.request_id &&
                 f.header.version == e.header.version &&
                 f.header.payload_len == e.header.payload_len,
             "a frame header differs from the stream's");
      expect(f.payload.size() == f.header.payload_len, "payload length differs from the header's");
      const auto body = stream.subspan(e.offset + wire::header_size, e.header.payload_len);
      expect(std::equal(body.begin(), body.end(), f.payload.begin()),
             "payload bytes differ from the stream's");
      expect(e.offset + wire::header_size + f.payload.size() <= fed,
             "a frame completed before its bytes were fed");
      taken = e.offset + wire::header_size + f.payload.size();
      ++got;
      check_decoders(f, seed);
    }
  }

  if (!bad_error.empty()) {
    // Final: every later answer is the same bad.
    for (int i = 0; i < 2; ++i) {
      auto again = p.next();
      expect(again.status == wire::parse_status::bad && again.error == bad_error,
             "bad did not stay bad");
    }
    auto fin = p.finish();
    expect(fin.status == wire::parse_status::bad && fin.error == bad_error,
           "finish() after bad is not that bad");
    return;
  }
  expect(!want.bad, "the reference found a bad header the parser did not");
  expect(got == want.frames.size(), "fewer frames than the reference");
  expect(p.buffered() == want.leftover, "leftover bytes differ from the reference");
  auto fin = p.finish();
  if (want.leftover == 0) {
    expect(fin.status == wire::parse_status::need_more, "finish() on a clean end is not need_more");
  } else {
    expect(fin.status == wire::parse_status::bad && !fin.error.empty(),
           "finish() on a cut frame is not bad");
    expect(fin.request_id.has_value() == (want.leftover >= wire::header_size),
           "truncated frame's id known or not");
    // finish() only reports: the parser can still take the rest.
    expect(p.next().status == wire::parse_status::need_more, "finish() changed the parser");
  }
}

}  // namespace
}  // namespace xbuf::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  xbuf::fuzz::run({data, size});
  return 0;
}
