// SPDX-License-Identifier: MIT
//
// make_corpus.cpp - writes the seed corpus of the fuzz targets:
//   make_corpus <dir>  ->  <dir>/frame_parser_fuzz/*, <dir>/handlers_fuzz/*
//
// Overview
//   Seeds give libFuzzer the shapes it would take long to find alone: valid
//   frames of every request (hello, alloc, attach, map, free, stats, ...),
//   replies and events, frames cut short or with one bad header field, and
//   for the handlers whole sessions (hello, alloc, share, attach, map,
//   client fences, eviction, a hang-up, a protocol error) of two clients.
//   Frames come from server/protocol.hpp's own encoders, so the seeds follow
//   the protocol when it changes; the handlers records follow the layout in
//   fuzz_support.hpp and build_request() in handlers_fuzz.cpp.
//   The committed tests/fuzz/corpus/ is this program's output; run it again
//   after changing either layout.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

#include "server/protocol.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace xbuf::fuzz {
namespace {

namespace wire = xbuf::wire;
using bytes = std::vector<std::uint8_t>;
using wire::msg_type;

bytes cat(std::initializer_list<bytes> parts) {
  bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

bytes cut(bytes b, std::size_t n) {
  b.resize(n < b.size() ? n : b.size());
  return b;
}

// One header byte patched: a frame that is bad in exactly one field.
bytes patched(bytes b, std::size_t at, std::uint8_t v) {
  b[at] = v;
  return b;
}

// frame_parser_fuzz input: side and chunking seed, then the stream.
bytes parser_input(bool requests, std::uint16_t seed, const bytes& stream) {
  bytes out{static_cast<std::uint8_t>((requests ? parser_side_requests : 0) | ((seed & 0x7f) << 1)),
            static_cast<std::uint8_t>(seed >> 7)};
  out.insert(out.end(), stream.begin(), stream.end());
  return out;
}

template <class R>
bytes ok_reply(msg_type t, std::uint64_t id, R body) {
  return wire::encode_reply(t, id, result<R>(std::move(body)));
}

// handlers_fuzz records (fuzz_support.hpp).
class records {
 public:
  // A request of type t with build_request()'s field bytes.
  records& req(int slot, msg_type t, std::initializer_list<std::uint8_t> fields) {
    return put(handlers_control(slot, handlers_record::request), t, fields);
  }
  records& split(int slot, std::uint8_t at, msg_type t,
                 std::initializer_list<std::uint8_t> fields) {
    return put(handlers_control(slot, handlers_record::split_request, at), t, fields);
  }
  records& hello(int slot) { return req(slot, msg_type::hello, {0, 4, 'f', 'u', 'z', 'z'}); }
  records& raw(int slot, std::span<const std::uint8_t> b) {
    while (!b.empty()) {
      const std::size_t n = b.size() < 255 ? b.size() : 255;
      out_.push_back(handlers_control(slot, handlers_record::raw));
      out_.push_back(static_cast<std::uint8_t>(n));
      out_.insert(out_.end(), b.begin(), b.begin() + static_cast<std::ptrdiff_t>(n));
      b = b.subspan(n);
    }
    return *this;
  }
  records& hang_up(int slot) {
    out_.push_back(handlers_control(slot, handlers_record::hang_up));
    return *this;
  }
  const bytes& out() const { return out_; }

 private:
  records& put(std::uint8_t control, msg_type t, std::initializer_list<std::uint8_t> fields) {
    out_.push_back(control);
    out_.push_back(static_cast<std::uint8_t>(static_cast<unsigned>(t) -
                                             static_cast<unsigned>(wire::msg_type_first_request)));
    out_.insert(out_.end(), fields);
    return *this;
  }
  bytes out_;
};

// build_request() field values used below.
constexpr std::uint8_t own0 = 0, other0 = pick_other;
constexpr std::uint8_t vram0 = 4, vram1 = 8, pinned = 1, pageable = 2;         // placement bytes
constexpr std::uint8_t kib64 = 15, kib256 = 63, kib512 = 0xfc, kib768 = 0xfd;  // size bytes

void write(const std::filesystem::path& dir, const std::string& name, const bytes& b) {
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / name, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void frame_parser_seeds(const std::filesystem::path& dir) {
  const bytes hello =
      wire::encode_message(1, wire::hello_request{.version = wire::protocol_version, .client_name = "seed"});
  const bytes alloc = wire::encode_message(
      2, wire::alloc_request{.size = 65536,
                             .alignment = 0,
                             .placements = {placement::vram(0), placement::pageable()},
                             .flags = wire::alloc_flag_cpu_access,
                             .name = "tensor"});
  const bytes attach = wire::encode_message(
      3, wire::attach_request{
             .buffer = 1, .device = 0, .mode = attach_mode::dynamic, .peer_capable = true});
  const bytes map = wire::encode_message(4, wire::map_request{.attachment = 1});
  const bytes free = wire::encode_message(5, wire::free_request{.id = 1});
  const bytes stats = wire::encode_message(6, wire::stats_request{});
  const bytes every_request =
      cat({hello, alloc, wire::encode_message(7, wire::share_request{.buffer = 1, .with = 2}),
           wire::encode_message(8, wire::export_request{.id = 1}), attach,
           wire::encode_message(9, wire::detach_request{.id = 1}), map,
           wire::encode_message(10, wire::unmap_request{.id = 1}),
           wire::encode_message(11,
                                wire::add_client_fence_request{
                                    .buffer = 1, .usage = fence_usage::read, .deadline_ms = 5}),
           wire::encode_message(12, wire::signal_client_fence_request{.fence = 1, .error = -5}),
           wire::encode_message(13, wire::wait_request{.fence = 1, .timeout_ms = 10}),
           wire::encode_message(14, wire::validate_request{.buffers = {1, 2, 3}}),
           wire::encode_message(
               15, wire::cpu_begin_request{.buffer = 1, .write = true, .timeout_ms = 0}),
           wire::encode_message(16, wire::cpu_end_request{.id = 1}), free, stats,
           wire::encode_message(17, wire::import_request{}),
           wire::encode_message(18, wire::release_request{.id = 1}),
           wire::encode_message(19, wire::trace_request{.since = 0, .max = 16}),
           wire::encode_message(20, wire::advise_request{.id = 1, .hint = eviction_hint::done})});

  write(dir, "req-hello", parser_input(true, 1, hello));
  write(dir, "req-alloc", parser_input(true, 2, alloc));
  write(dir, "req-attach", parser_input(true, 3, attach));
  write(dir, "req-map", parser_input(true, 4, map));
  write(dir, "req-free", parser_input(true, 5, free));
  write(dir, "req-stats", parser_input(true, 6, stats));
  write(dir, "req-every", parser_input(true, 7, every_request));
  write(dir, "req-every-bytewise", parser_input(true, 0x1234, every_request));
  write(dir, "req-cut-header", parser_input(true, 8, cut(hello, 13)));
  write(dir, "req-cut-payload", parser_input(true, 9, cut(alloc, wire::header_size + 10)));
  write(dir, "req-then-cut", parser_input(true, 10, cat({hello, cut(map, 30)})));
  write(dir, "req-bad-magic", parser_input(true, 11, cat({hello, patched(alloc, 0, 'Y')})));
  write(dir, "req-bad-version", parser_input(true, 12, patched(hello, 4, 2)));
  write(dir, "req-bad-reserved", parser_input(true, 13, patched(hello, 21, 1)));
  write(dir, "req-oversized", parser_input(true, 14, patched(hello, 18, 0x10)));
  write(dir, "req-bad-type", parser_input(true, 15, patched(hello, 6, 0x40)));
  write(dir, "req-reply-type", parser_input(true, 16, patched(hello, 7, 0x80)));
  // A payload that is not its message: trailing bytes, a bad bool, a bad enum.
  write(dir, "req-trailing",
        parser_input(true, 17, wire::encode_frame(3, 18, {1, 0, 0, 0, 0, 0, 0, 0, 9})));
  write(dir, "req-bad-enum", parser_input(true, 18, patched(attach, wire::header_size + 12, 7)));
  write(dir, "req-bad-bool", parser_input(true, 19, patched(attach, wire::header_size + 13, 2)));
  // Well-formed but past a cap: invalid_argument naming the field.
  write(dir, "req-over-cap",
        parser_input(true, 20,
                     wire::encode_message(
                         1, wire::hello_request{
                                .client_name = std::string(wire::max_client_name_bytes + 1, 'n')})));

  const wire::map_reply mapped{.where = placement::vram(1),
                               .ranges = {{0x1000, 4096}, {0x9000, 8192}},
                               .peer = true,
                               .reason = "peer: same switch",
                               .generation = 3,
                               .wait_fence = 7};
  wire::stats_reply st{.backend = "sim",
                       .domains = {},
                       .clients = {},
                       .buffers = {},
                       .buffers_truncated = false,
                       .counters = {}};
  st.domains.push_back({.name = "vram0",
                        .where = placement::vram(0),
                        .capacity = 1 << 20,
                        .used = 4096,
                        .delayed_free_bytes = 0,
                        .buffers = 1});
  st.clients.push_back(
      {.owner = 1, .pid = 42, .uid = 1000, .name = "seed", .bytes = 4096, .buffers = 1});
  st.buffers.push_back({.id = 1,
                        .owner = 1,
                        .name = "t",
                        .size = 4096,
                        .where = placement::vram(0),
                        .attachments = 1,
                        .pins = 0,
                        .fences = 2,
                        .generation = 1,
                        .lost = false});
  st.counters.push_back({.name = "evictions", .value = 3});
  const bytes replies = cat({
      ok_reply(msg_type::hello, 1, wire::hello_reply{.server_version = wire::protocol_version, .owner = 1}),
      ok_reply(msg_type::alloc, 2, wire::buffer_reply{.buffer = 1}),
      ok_reply(msg_type::attach, 3, wire::attach_reply{.attachment = 1}),
      ok_reply(msg_type::map, 4, mapped),
      wire::encode_reply(msg_type::free, 5, status(ok())),
      ok_reply(msg_type::export_fd, 8,
               wire::export_reply{.offset = 0, .size = 4096, .kind = memory_kind::device}),
      ok_reply(msg_type::wait, 13, wire::wait_reply{.fence_error = -110}),
      ok_reply(msg_type::validate, 14,
               wire::validate_reply{.promoted = 1, .deferred = 0, .in_place = 2, .no_room = 0}),
      ok_reply(msg_type::cpu_begin, 15, wire::cpu_begin_reply{.size = 4096}),
      wire::encode_message(
          0,
          wire::move_notify_event{
              .attachment = 1, .buffer = 1, .from = placement::vram(0), .to = placement::pinned()}),
      wire::encode_message(0, wire::fence_signaled_event{.fence = 7, .error = 0}),
      wire::encode_message(0, wire::memory_pressure_event{.where = placement::vram(0), .bytes = 1 << 20}),
  });
  const bytes error_reply =
      wire::encode_error_reply(static_cast<std::uint16_t>(msg_type::alloc), 2,
                               error(errc::out_of_memory, "vram0: no room for 1 MiB"));
  write(dir, "rep-every", parser_input(false, 20, replies));
  write(dir, "rep-stats", parser_input(false, 21, ok_reply(msg_type::stats, 6, st)));
  write(dir, "rep-map", parser_input(false, 22, ok_reply(msg_type::map, 4, mapped)));
  write(dir, "rep-error", parser_input(false, 23, error_reply));
  write(dir, "rep-cut", parser_input(false, 24, cut(ok_reply(msg_type::stats, 6, st), 60)));
  write(dir, "rep-request-type", parser_input(false, 25, hello));
}

void handlers_seeds(const std::filesystem::path& dir) {
  using t = msg_type;
  // hello, alloc, share, attach, map, unmap, detach, validate, CPU access, free, stats.
  write(dir, "lifecycle",
        records()
            .hello(0)
            .hello(1)
            .req(0, t::alloc, {kib64, 0, 2, vram0, pageable, 0, 1, 'b'})
            .req(0, t::share, {own0, 3})  // with: the second client connected (slot b)
            .req(0, t::advise, {own0, 1})    // a: done with it
            .req(1, t::advise, {other0, 2})  // b may not advise a's buffer
            .req(1, t::attach, {other0, 1 /* device 0, pinned */})
            .req(1, t::map, {own0})
            .req(1, t::unmap, {own0})
            .req(1, t::detach, {own0})
            .req(0, t::validate, {1, own0})
            .req(0, t::cpu_begin, {own0, 1})
            .req(0, t::cpu_end, {own0})
            .req(0, t::export_fd, {own0})
            .req(0, t::free, {own0})
            .req(1, t::stats, {})
            .req(1, t::release, {own0})  // b never exported it
            .req(0, t::release, {own0})  // a's hold ends: the freed buffer goes
            .req(0, t::release, {own0})
            .req(1, t::trace, {0, 8})
            .out());
  // VRAM fills; a dynamic attachment is evicted and told (move_notify).
  write(dir, "eviction",
        records()
            .hello(0)
            .hello(1)
            .req(0, t::alloc, {kib512, 0, 2, vram0, pinned, 0, 0})
            .req(0, t::attach, {own0, 1 | 4 /* device 0, dynamic */})
            .req(0, t::map, {own0})
            .req(1, t::alloc, {kib768, 0, 1, vram0, 0, 0})
            .req(0, t::map, {own0})
            .req(0, t::validate, {1, own0})
            .req(1, t::alloc, {kib256, 0, 2, vram1, vram0, 2, 0})
            .req(1, t::stats, {})
            .out());
  // Client fences: add, wait, signal (bad error, good, twice), wait again.
  write(dir, "fences",
        records()
            .hello(0)
            .req(0, t::alloc, {kib64, 0, 1, pinned, 0, 0})
            .req(0, t::add_client_fence, {own0, 1 | (3 << 2)})
            .req(0, t::wait, {own0, 1})
            .req(0, t::signal_client_fence, {own0, 3})
            .req(0, t::signal_client_fence, {own0, 1})
            .req(0, t::signal_client_fence, {own0, 0})
            .req(0, t::wait, {own0, 0})
            .req(0, t::cpu_begin, {own0, 0})
            .req(0, t::cpu_end, {own0})
            .out());
  // b uses a's ids without a share; requests before hello.
  write(dir, "foreign-ids",
        records()
            .req(1, t::alloc, {kib64, 0, 1, pageable, 0, 0})
            .hello(0)
            .hello(1)
            .req(0, t::alloc, {kib64, 0, 1, pageable, 0, 0})
            .req(0, t::attach, {own0, 0})
            .req(1, t::free, {other0})
            .req(1, t::attach, {other0, 0})
            .req(1, t::map, {other0})
            .req(1, t::detach, {other0})
            .req(1, t::cpu_begin, {other0, 1})
            .req(1, t::export_fd, {other0})
            .req(1, t::validate, {2, other0, own0})
            .req(1, t::add_client_fence, {other0, 4})
            .out());
  // Frames cut across records, then garbage: a protocol error, a reconnect.
  const bytes hello =
      wire::encode_message(1, wire::hello_request{.version = wire::protocol_version, .client_name = "raw"});
  const bytes alloc =
      wire::encode_message(2, wire::alloc_request{.size = 8192,
                                                  .alignment = 4096,
                                                  .placements = {placement::pinned()},
                                                  .flags = 0,
                                                  .name = "r"});
  const bytes stream = cat({hello, alloc});
  const std::span<const std::uint8_t> s(stream);
  write(dir, "raw-split",
        records()
            .raw(0, s.first(5))
            .raw(0, s.subspan(5, 30))
            .raw(0, s.subspan(35))
            .split(1, 10, t::hello, {0, 1, 'b'})
            .raw(0, patched(hello, 0, 0))
            .hello(0)
            .req(0, t::stats, {})
            .out());
  write(dir, "hang-up",
        records()
            .hello(0)
            .hello(1)
            .req(0, t::alloc, {kib256, 0, 2, vram1, pinned, 0, 0})
            .req(0, t::share, {own0, 3})
            .req(1, t::attach, {other0, 2 /* device 1, pinned */})
            .req(1, t::add_client_fence, {other0, 2})
            .hang_up(0)
            .req(1, t::map, {own0})
            .req(1, t::cpu_begin, {other0, 0})
            .hang_up(1)
            .hello(1)
            .req(1, t::stats, {})
            .out());
}

}  // namespace
}  // namespace xbuf::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(
        stderr,
        "usage: make_corpus <dir>  (writes <dir>/frame_parser_fuzz and <dir>/handlers_fuzz)\n");
    return 2;
  }
  const std::filesystem::path dir(argv[1]);
  xbuf::fuzz::frame_parser_seeds(dir / "frame_parser_fuzz");
  xbuf::fuzz::handlers_seeds(dir / "handlers_fuzz");
  return 0;
}
