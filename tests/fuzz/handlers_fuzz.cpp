// SPDX-License-Identifier: MIT
//
// handlers_fuzz.cpp - the frames of up to two clients at a time, through
// each client's frame_parser and the route table (server/handlers.hpp),
// into a real memory manager on the sim backend.
//
// Overview
//   Each input (layout in fuzz_support.hpp) is a sequence of records, each
//   for client slot a or b: raw bytes for that client's parser, a request
//   built from a few bytes (ids picked from what earlier replies handed out,
//   to this client or, on purpose, to another), the same split in two
//   chunks, or a hang-up. Every complete frame runs the way session::handle
//   runs it: run_route(); while the outcome is a fence_wait, wait for the
//   fence (blocking here, on a timer there), then finish_wait() (wait) or
//   run_route() again (a rerun: alloc, cpu_begin). A bad frame closes that
//   client's connection, as the server does; the slot's next record
//   connects a new client. The manager lives across inputs (see daemon);
//   each input must leave it empty.
//
//   Invariants checked (beyond ASan / UBSan / LeakSanitizer):
//     - every request gets exactly one outcome: a reply, or a fence to
//       wait for, never both; only wait's is answered by finish_wait, and
//       reruns end (max_reruns); the reply is exactly one frame of
//       type reply_bit|request with the request's id, whose status decodes,
//       and whose body decodes when the status is ok; export's reply
//       carries an fd exactly when it is ok;
//     - a request before hello is bad_state;
//     - an id handed to another owner never succeeds: buffers not shared
//       with the caller, attachments; free and share of a buffer the caller
//       does not own fail even when it was shared with it;
//     - events reach only their own client: fence_signaled names a fence
//       id that client was told of, move_notify never another owner's
//       attachment; every event frame decodes;
//     - once every client is gone (release_owner, after forget_all), every
//       domain drops to 0 bytes used and 0 delayed-free bytes, no buffer is
//       left and nothing is pinned, once the fences signaled.
//
// Rules
//   - Bounded: the sessions get small daemon limits (client fences forced
//     after max_fence_deadline, allocations waiting alloc_wait at most), so
//     every fence_wait ends soon (handlers.hpp promises they all end); one
//     without a limit that has not ended after settle_limit is a failure.
//     Frames are run as the parser passed them, unchanged.
//   - Small heaps (VRAM of 1 MiB per device) so that a few requests fill a
//     domain and eviction, migration and delayed frees all run.
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "allocator/memory_manager.hpp"
#include "backends/sim/sim_backend.hpp"
#include "server/client_registry.hpp"
#include "server/handlers.hpp"
#include "server/protocol.hpp"
#include "tests/fuzz/fuzz_support.hpp"

namespace xbuf::fuzz {
namespace {

namespace wire = xbuf::wire;
using server::client_registry;
using server::route_outcome;
using server::session_context;
using wire::msg_type;

constexpr std::uint64_t KiB = 1024;
constexpr std::uint64_t MiB = 1024 * KiB;
constexpr auto max_fence_deadline = std::chrono::milliseconds(4);
constexpr auto alloc_wait = std::chrono::milliseconds(100);
constexpr int max_reruns = 10000;       // a rerun that never ends is a livelock
constexpr std::size_t max_clients = 8;  // per input, over both slots and their reconnects
constexpr auto settle_limit = std::chrono::seconds(10);

std::string status_text(errc code, const std::string& message) {
  return std::string(to_string(code)) + ": " + message;
}

// ---------------------------------------------------------------------------
// What the sinks check. Events arrive on whatever thread causes them (the
// caller of a manager function, a copy engine, the deadline watchdog).

class event_model {
 public:
  void told_fence(owner_id owner, std::uint64_t fence) {
    std::lock_guard lock(mutex_);
    told_[owner].insert(fence);
  }
  void attached(owner_id owner, attachment_id att) {
    std::lock_guard lock(mutex_);
    attachment_owner_[att] = owner;
  }

  void check(owner_id owner, const std::vector<std::uint8_t>& bytes) {
    wire::frame_parser p(false);
    p.feed(bytes);
    auto r = p.next();
    expect(r.status == wire::parse_status::complete, "an event frame does not parse: " + r.error);
    expect(p.buffered() == 0, "an event is more than one frame");
    const wire::frame& f = r.frame_;
    expect(f.header.request_id == 0, "an event carries a request id");
    std::lock_guard lock(mutex_);
    if (f.header.type == static_cast<std::uint16_t>(msg_type::fence_signaled)) {
      auto ev = wire::decode_message<wire::fence_signaled_event>(f);
      expect(bool(ev), "fence_signaled does not decode");
      expect(told_[owner].contains(ev->fence),
             "fence_signaled for fence " + std::to_string(ev->fence) + ", never told to owner " +
                 std::to_string(owner));
    } else {
      auto ev = wire::decode_message<wire::move_notify_event>(f);
      expect(bool(ev), "an event that is neither fence_signaled nor a decodable move_notify");
      auto it = attachment_owner_.find(ev->attachment);
      expect(it == attachment_owner_.end() || it->second == owner,
             "move_notify for attachment " + std::to_string(ev->attachment) + " of another owner");
    }
  }

 private:
  std::mutex mutex_;
  std::map<owner_id, std::set<std::uint64_t>> told_;
  std::map<attachment_id, owner_id> attachment_owner_;
};

// ---------------------------------------------------------------------------
// The daemon's side: a manager, the registry, and one session per client.

struct client {
  owner_id owner = 0;
  std::unique_ptr<session_context> ctx;
  wire::frame_parser parser{true};
  bool live = true;  // false after a hang-up or a bad frame
  std::vector<std::uint64_t> buffers, attachments, fences;
  std::uint64_t next_request_id = 1;
};

// What outlives one input: the manager over the sim backend, the client
// registry, the owner numbering. Made once: making a manager (memfd VRAM,
// host arenas, copy-engine threads) costs more than most inputs. finish()
// proves each input leaves it empty, so inputs do not leak into each other;
// owner ids are never reused, as in the daemon.
struct daemon {
  daemon() {
    auto s = create_sim_backend(make_sim_config(2, static_cast<std::size_t>(MiB)));
    expect(bool(s), "sim backend");
    sim = std::move(*s);
    manager_config mc;
    mc.device_backend = sim.get();
    mc.pinned_capacity = 2 * MiB;
    mc.pageable_capacity = 4 * MiB;
    mc.pinned_limit = 1 * MiB;
    mc.promote_interval = std::chrono::milliseconds(0);
    auto m = memory_manager::create(mc);
    expect(bool(m), "memory manager");
    mm = std::move(*m);
  }
  ~daemon() { mm.reset(); }  // before the backend it uses
  daemon(const daemon&) = delete;
  daemon& operator=(const daemon&) = delete;

  std::unique_ptr<sim_backend> sim;
  std::unique_ptr<memory_manager> mm;
  client_registry registry;
  const server::logger log{false};
  owner_id next_owner = 1;
};

class harness {
 public:
  explicit harness(daemon& d) : model_(std::make_shared<event_model>()), d_(d), mm_(*d.mm) {}
  harness(const harness&) = delete;
  harness& operator=(const harness&) = delete;

  void run(byte_cursor& in) {
    while (!in.empty()) {
      const std::uint8_t control = in.u8();
      const int slot = control & 1;
      const auto kind = static_cast<handlers_record>((control >> 1) & 3);
      client* c = slot_client(slot);
      if (c == nullptr) return;  // out of clients for this input
      switch (kind) {
        case handlers_record::raw: {
          const std::size_t n = in.u8();
          deliver(*c, in.bytes(n));
          break;
        }
        case handlers_record::request:
        case handlers_record::split_request: {
          const auto bytes = build_request(*c, in);
          std::size_t split =
              kind == handlers_record::split_request ? (control >> 3) : bytes.size();
          if (split > bytes.size()) split = bytes.size();
          deliver(*c, std::span(bytes).first(split));
          if (c->live) deliver(*c, std::span(bytes).subspan(split));
          break;
        }
        case handlers_record::hang_up:
          disconnect(*c);
          break;
      }
    }
  }

  // Everyone leaves; then the manager must hold nothing.
  void finish() {
    for (auto& c : clients_) {
      if (c->live) disconnect(*c);
    }
    const auto give_up = std::chrono::steady_clock::now() + settle_limit;
    for (;;) {
      manager_stats s = mm_.stats();
      bool empty = s.pinned_bytes == 0 && mm_.buffers().empty();
      for (const auto& d : s.domains) empty = empty && d.used == 0 && d.delayed_free_bytes == 0;
      if (empty) break;
      if (std::chrono::steady_clock::now() > give_up) {
        std::string why = "manager not empty after every owner was released:";
        for (const auto& d : s.domains) {
          why += " " + d.name + " used " + std::to_string(d.used) + " delayed " +
                 std::to_string(d.delayed_free_bytes);
        }
        why += " pinned " + std::to_string(s.pinned_bytes) + " buffers " +
               std::to_string(mm_.buffers().size());
        expect(false, why);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }

 private:
  // The slot's live client, connecting a new one when there is none.
  client* slot_client(int slot) {
    if (slots_[slot] != nullptr && slots_[slot]->live) return slots_[slot];
    if (clients_.size() == max_clients) return nullptr;
    auto c = std::make_unique<client>();
    c->owner = d_.next_owner++;
    d_.registry.add(
        server::client_record{.owner = c->owner, .pid = 0, .uid = 0, .gid = 0, .name = {}},
        nullptr);
    server::event_sink sink = [model = model_, owner = c->owner](std::vector<std::uint8_t> bytes) {
      model->check(owner, bytes);
    };
    c->ctx = std::make_unique<session_context>(mm_, d_.registry, d_.log, c->owner, std::move(sink));
    // The daemon's limits, small: every wait of the fuzzer stays short.
    c->ctx->max_fence_deadline = max_fence_deadline;
    c->ctx->alloc_wait = alloc_wait;
    slots_[slot] = c.get();
    clients_.push_back(std::move(c));
    return slots_[slot];
  }

  // What the session does at its end (session::release).
  void disconnect(client& c) {
    if (trace_) std::fprintf(stderr, "owner %u: disconnects\n", c.owner);
    c.ctx->fences.forget_all();
    (void)mm_.release_owner(c.owner);
    (void)d_.registry.remove(c.owner);
    c.live = false;
  }

  void deliver(client& c, std::span<const std::uint8_t> bytes) {
    if (!c.live) return;
    c.parser.feed(bytes);
    for (;;) {
      wire::parse_result r = c.parser.next();
      if (r.status == wire::parse_status::need_more) return;
      if (r.status == wire::parse_status::bad) {
        // The server answers protocol_error and closes this connection only.
        disconnect(c);
        return;
      }
      handle(c, r.frame_);
    }
  }

  // ---- ownership model: who was handed which id ----

  bool foreign_buffer(owner_id caller, std::uint64_t id) const {
    auto it = buffer_owner_.find(id);
    if (it == buffer_owner_.end() || it->second == caller) return false;
    auto s = shared_.find(id);
    return s == shared_.end() || !s->second.contains(caller);
  }
  bool not_own_buffer(owner_id caller, std::uint64_t id) const {
    auto it = buffer_owner_.find(id);
    return it != buffer_owner_.end() && it->second != caller;
  }
  bool foreign_attachment(owner_id caller, std::uint64_t id) const {
    auto it = attachment_owner_.find(id);
    return it != attachment_owner_.end() && it->second != caller;
  }

  // Does frame f name an id the caller must not be able to use?
  bool names_foreign_id(owner_id caller, const wire::frame& f) const {
    auto buffer = [&](auto m) { return m && foreign_buffer(caller, m->buffer); };
    switch (static_cast<msg_type>(f.header.type)) {
      case msg_type::free: {
        auto m = wire::decode_message<wire::free_request>(f);
        return m && not_own_buffer(caller, m->id);
      }
      case msg_type::share: {
        auto m = wire::decode_message<wire::share_request>(f);
        return m && not_own_buffer(caller, m->buffer);
      }
      case msg_type::advise: {  // owner only, as free
        auto m = wire::decode_message<wire::advise_request>(f);
        return m && not_own_buffer(caller, m->id);
      }
      case msg_type::export_fd: {
        auto m = wire::decode_message<wire::export_request>(f);
        return m && foreign_buffer(caller, m->id);
      }
      case msg_type::cpu_end: {
        auto m = wire::decode_message<wire::cpu_end_request>(f);
        return m && foreign_buffer(caller, m->id);
      }
      case msg_type::attach:
        return buffer(wire::decode_message<wire::attach_request>(f));
      case msg_type::add_client_fence:
        return buffer(wire::decode_message<wire::add_client_fence_request>(f));
      case msg_type::cpu_begin:
        return buffer(wire::decode_message<wire::cpu_begin_request>(f));
      case msg_type::validate: {
        auto m = wire::decode_message<wire::validate_request>(f);
        if (!m) return false;
        for (auto id : m->buffers) {
          if (foreign_buffer(caller, id)) return true;
        }
        return false;
      }
      case msg_type::detach: {
        auto m = wire::decode_message<wire::detach_request>(f);
        return m && foreign_attachment(caller, m->id);
      }
      case msg_type::map: {
        auto m = wire::decode_message<wire::map_request>(f);
        return m && foreign_attachment(caller, m->attachment);
      }
      case msg_type::unmap: {
        auto m = wire::decode_message<wire::unmap_request>(f);
        return m && foreign_attachment(caller, m->id);
      }
      default:
        return false;
    }
  }

  // ---- one request, as a session runs it ----

  // session::await_fence, blocking: the timeout, or until the fence
  // signals. A wait without limit must end too (see Rules).
  static void await_fence(const server::fence_wait& w, const std::string& what) {
    if (w.fence->is_signaled() || w.timeout_ms == 0) return;
    const bool forever = w.timeout_ms == server::wait_forever_ms;
    const fence_clock::duration limit =
        forever ? fence_clock::duration(settle_limit) : std::chrono::milliseconds(w.timeout_ms);
    (void)w.fence->wait(limit);
    if (forever)
      expect(w.fence->is_signaled(), what + ": a fence_wait without limit did not end in time");
  }

  void handle(client& c, const wire::frame& f) {
    const bool was_greeted = c.ctx->greeted.load();
    const bool foreign = names_foreign_id(c.owner, f);
    const std::string what = wire::type_name(f.header.type);

    // As session::handle: wait, then answer (wait) or run again (rerun).
    route_outcome out = server::run_route(server::find_route(f.header.type), *c.ctx, f);
    for (int runs = 1; out.wait; ++runs) {
      expect(out.reply.bytes.empty() && !out.reply.fd,
             what + ": both a reply and a fence to wait for");
      expect(runs <= max_reruns,
             what + ": still rerun after " + std::to_string(max_reruns) + " runs");
      await_fence(*out.wait, what);
      if (!out.wait->rerun) {
        expect(f.header.type == static_cast<std::uint16_t>(msg_type::wait),
               what + ": a fence_wait answered by finish_wait is wait's alone");
        out.reply = server::finish_wait(f.header, *out.wait);
        break;
      }
      out = server::run_route(server::find_route(f.header.type), *c.ctx, f);
    }
    server::outgoing_frame reply = std::move(out.reply);
    expect(!reply.bytes.empty(), what + ": no reply");

    wire::frame_parser p(false);
    p.feed(reply.bytes);
    auto pr = p.next();
    expect(pr.status == wire::parse_status::complete,
           what + ": the reply does not parse: " + pr.error);
    expect(p.buffered() == 0, what + ": the reply is more than one frame");
    const wire::frame& rf = pr.frame_;
    expect(rf.header.type == (f.header.type | wire::reply_bit), what + ": reply of another type");
    expect(rf.header.request_id == f.header.request_id, what + ": reply with another request id");

    wire::reader st(rf.payload, "status");
    errc code = errc::ok;
    std::string message;
    st("code", code);
    st("message", message);
    expect(!st.failed(), what + ": reply status does not decode: " + st.error_message());
    const bool ok = code == errc::ok;
    if (!was_greeted && f.header.type != static_cast<std::uint16_t>(msg_type::hello)) {
      expect(code == errc::bad_state,
             what + " before hello answered " + status_text(code, message));
    }
    if (foreign) expect(!ok, what + " with another owner's id succeeded");
    if (f.header.type == static_cast<std::uint16_t>(msg_type::export_fd)) {
      expect(bool(reply.fd) == ok, what + ": an fd exactly when ok");
    } else {
      expect(!reply.fd, what + ": an fd with a reply that is not export's");
    }
    if (trace_) {
      std::fprintf(stderr, "owner %u: %s id %llu -> %s\n", c.owner, what.c_str(),
                   static_cast<unsigned long long>(f.header.request_id),
                   status_text(code, message).c_str());
    }
    if (ok) record(c, f, rf);
    // As the session does once the reply is queued.
    c.ctx->fences.arm();
  }

  template <class R>
  R body_of(const wire::frame& request, const wire::frame& rf) {
    auto r = wire::decode_reply<R>(static_cast<msg_type>(request.header.type), rf);
    expect(bool(r), wire::type_name(rf.header.type) + ": an ok reply whose body does not decode: " +
                        (r ? std::string() : r.err().message));
    return *r;
  }

  // The ids an ok reply handed out, for the picks and the ownership model.
  void record(client& c, const wire::frame& f, const wire::frame& rf) {
    switch (static_cast<msg_type>(f.header.type)) {
      case msg_type::hello: {
        auto h = body_of<wire::hello_reply>(f, rf);
        expect(h.owner == c.owner && h.server_version == wire::protocol_version,
               "hello reply names another owner");
        break;
      }
      case msg_type::alloc: {
        const auto id = body_of<wire::buffer_reply>(f, rf).buffer;
        expect(id != 0 && !buffer_owner_.contains(id), "alloc handed out an id twice");
        buffer_owner_[id] = c.owner;
        c.buffers.push_back(id);
        break;
      }
      case msg_type::share: {
        auto m = wire::decode_message<wire::share_request>(f);
        shared_[m->buffer].insert(m->with);
        break;
      }
      case msg_type::attach: {
        const auto id = body_of<wire::attach_reply>(f, rf).attachment;
        expect(id != 0 && !attachment_owner_.contains(id), "attach handed out an id twice");
        attachment_owner_[id] = c.owner;
        model_->attached(c.owner, id);
        c.attachments.push_back(id);
        break;
      }
      case msg_type::map: {
        const auto m = body_of<wire::map_reply>(f, rf);
        if (m.wait_fence != 0) {
          model_->told_fence(c.owner, m.wait_fence);
          c.fences.push_back(m.wait_fence);
        }
        break;
      }
      case msg_type::add_client_fence: {
        const auto id = body_of<wire::fence_reply>(f, rf).fence;
        model_->told_fence(c.owner, id);
        c.fences.push_back(id);
        break;
      }
      case msg_type::export_fd:
        (void)body_of<wire::export_reply>(f, rf);
        break;
      case msg_type::wait:
        (void)body_of<wire::wait_reply>(f, rf);
        break;
      case msg_type::validate:
        (void)body_of<wire::validate_reply>(f, rf);
        break;
      case msg_type::cpu_begin:
        (void)body_of<wire::cpu_begin_reply>(f, rf);
        break;
      case msg_type::stats:
        (void)body_of<wire::stats_reply>(f, rf);
        break;
      case msg_type::import_fd:
        (void)body_of<wire::import_reply>(f, rf);
        break;
      case msg_type::trace:
        (void)body_of<wire::trace_reply>(f, rf);
        break;
      default:
        (void)body_of<wire::empty_body>(f, rf);
        break;
    }
  }

  // ---- requests built from a few input bytes ----

  // An id from `list` of this client, or (pick_other) of another client.
  std::uint64_t pick(byte_cursor& in, const client& self,
                     std::vector<std::uint64_t> client::*list) const {
    const std::uint8_t p = in.u8();
    if (p == pick_literal) return in.u64();
    std::vector<std::uint64_t> from;
    for (const auto& c : clients_) {
      if (((p & pick_other) != 0) == (c.get() != &self))
        from.insert(from.end(), ((*c).*list).begin(), ((*c).*list).end());
    }
    const std::uint8_t i = p & static_cast<std::uint8_t>(~pick_other);
    return from.empty() ? i : from[i % from.size()];
  }

  std::vector<std::uint8_t> build_request(client& c, byte_cursor& in) {
    const std::uint64_t id = c.next_request_id++;
    constexpr auto requests = static_cast<unsigned>(wire::msg_type_last_request) -
                              static_cast<unsigned>(wire::msg_type_first_request) + 1;
    const auto type = static_cast<msg_type>(static_cast<unsigned>(wire::msg_type_first_request) +
                                            in.u8() % requests);
    auto buffer = [&] { return pick(in, c, &client::buffers); };
    auto attachment = [&] { return pick(in, c, &client::attachments); };
    auto fence = [&] { return pick(in, c, &client::fences); };
    auto text = [&] { return std::string(in.text(in.u8() % 32)); };
    switch (type) {
      case msg_type::hello: {
        const std::uint8_t v = in.u8();
        return wire::encode_message(
            id, wire::hello_request{.version = v == 0 ? std::uint32_t{wire::protocol_version} : v,
                                    .client_name = text()});
      }
      case msg_type::alloc: {
        // Mostly sizes that fit the small heaps; sometimes the edges.
        constexpr std::uint64_t odd_sizes[] = {
            0,          1,     4097,         MiB,     MiB + 4 * KiB, 2 * MiB,   4 * MiB,  5 * MiB,
            1ull << 40, ~0ull, ~0ull - 4095, 3 * KiB, 512 * KiB,     768 * KiB, 64 * KiB, 12345};
        const std::uint8_t s = in.u8();
        const std::uint64_t size = s < 0xf0 ? (s % 64 + 1) * 4 * KiB : odd_sizes[s - 0xf0];
        const std::uint8_t a = in.u8();
        const std::uint64_t alignment = a == 0 ? 0 : a < 0x20 ? 1ull << (a % 31) : a;
        std::vector<placement> where(in.u8() % 4);
        for (auto& w : where) {
          const std::uint8_t q = in.u8();
          // kind 3 is out of range: the decoder must refuse it.
          w.kind = static_cast<memory_kind>(q % 4);
          w.device = (q >> 2) % 4 - 1;
        }
        const std::uint32_t flags = in.u8() % 8;
        return wire::encode_message(id, wire::alloc_request{.size = size,
                                                            .alignment = alignment,
                                                            .placements = std::move(where),
                                                            .flags = flags,
                                                            .name = text()});
      }
      case msg_type::free:
        return wire::encode_message(id, wire::free_request{.id = buffer()});
      case msg_type::export_fd:
        return wire::encode_message(id, wire::export_request{.id = buffer()});
      case msg_type::cpu_end:
        return wire::encode_message(id, wire::cpu_end_request{.id = buffer()});
      case msg_type::share: {
        const std::uint64_t b = buffer();
        const std::uint8_t w = in.u8();
        owner_id with = w;
        if ((w & 1) != 0) with = clients_[(w >> 1) % clients_.size()]->owner;
        return wire::encode_message(id, wire::share_request{.buffer = b, .with = with});
      }
      case msg_type::attach: {
        const std::uint64_t b = buffer();
        const std::uint8_t d = in.u8();
        return wire::encode_message(
            id, wire::attach_request{.buffer = b,
                                     .device = d % 4 - 1,
                                     .mode = static_cast<attach_mode>((d >> 2) & 1),
                                     .peer_capable = ((d >> 3) & 1) != 0});
      }
      case msg_type::detach:
        return wire::encode_message(id, wire::detach_request{.id = attachment()});
      case msg_type::map:
        return wire::encode_message(id, wire::map_request{.attachment = attachment()});
      case msg_type::unmap:
        return wire::encode_message(id, wire::unmap_request{.id = attachment()});
      case msg_type::add_client_fence: {
        const std::uint64_t b = buffer();
        const std::uint8_t u = in.u8();
        return wire::encode_message(
            id, wire::add_client_fence_request{.buffer = b,
                                               .usage = static_cast<fence_usage>(u % 4),
                                               .deadline_ms = static_cast<std::uint32_t>(u >> 2)});
      }
      case msg_type::signal_client_fence: {
        const std::uint64_t fc = fence();
        constexpr std::int32_t errors[] = {0, -EIO, -ECANCELED, 5, -5000, INT_MIN};
        return wire::encode_message(
            id, wire::signal_client_fence_request{.fence = fc, .error = errors[in.u8() % 6]});
      }
      case msg_type::wait: {
        const std::uint64_t fc = fence();
        return wire::encode_message(id,
                                    wire::wait_request{.fence = fc, .timeout_ms = in.u8() % 3u});
      }
      case msg_type::validate: {
        std::vector<std::uint64_t> ids(in.u8() % 5);
        for (auto& b : ids) b = buffer();
        return wire::encode_message(id, wire::validate_request{.buffers = std::move(ids)});
      }
      case msg_type::cpu_begin: {
        const std::uint64_t b = buffer();
        const std::uint8_t w = in.u8();
        return wire::encode_message(
            id, wire::cpu_begin_request{.buffer = b,
                                        .write = (w & 1) != 0,
                                        .timeout_ms = static_cast<std::uint32_t>(w >> 1)});
      }
      case msg_type::stats:
        return wire::encode_message(id, wire::stats_request{});
      case msg_type::import_fd:  // no fd travels through the fuzzer: "no fd came with the request"
        return wire::encode_message(id, wire::import_request{});
      case msg_type::release:
        return wire::encode_message(id, wire::release_request{.id = buffer()});
      case msg_type::trace: {
        const std::uint64_t since = in.u8();
        return wire::encode_message(id, wire::trace_request{.since = since, .max = in.u8() * 8u});
      }
      case msg_type::advise: {
        const std::uint64_t b = buffer();
        return wire::encode_message(id, wire::advise_request{.id = b, .hint = static_cast<eviction_hint>(in.u8() % 3)});
      }
      default:
        break;
    }
    expect(false, "build_request: a request type without a builder");
    return {};
  }

  // XBUF_FUZZ_TRACE=1: every request and its status on stderr, for
  // reading what a crashing input did.
  const bool trace_ = std::getenv("XBUF_FUZZ_TRACE") != nullptr;
  std::shared_ptr<event_model> model_;
  daemon& d_;
  memory_manager& mm_;
  std::vector<std::unique_ptr<client>> clients_;
  client* slots_[2] = {nullptr, nullptr};
  std::map<buffer_id, owner_id> buffer_owner_;
  std::map<buffer_id, std::set<owner_id>> shared_;
  std::map<attachment_id, owner_id> attachment_owner_;
};

}  // namespace
}  // namespace xbuf::fuzz

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static xbuf::fuzz::daemon d;
  xbuf::fuzz::byte_cursor in({data, size});
  xbuf::fuzz::harness h(d);
  h.run(in);
  h.finish();
  return 0;
}
