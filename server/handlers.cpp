// SPDX-License-Identifier: MIT
#include "server/handlers.hpp"

#include <algorithm>
#include <chrono>
#include <iterator>
#include <string>
#include <type_traits>
#include <utility>

#include "server/stats.hpp"

namespace xbuf::server {

namespace {

wire::msg_type type_of(const wire::frame_header& h) { return static_cast<wire::msg_type>(h.type); }

std::string fence_name(std::uint64_t id) { return "fence " + std::to_string(id); }

// An alloc retried under memory pressure waits this long between tries: a
// timer, as a fence nobody signals (the session's wait ends at its timeout).
constexpr std::uint32_t pressure_retry_ms = 20;
// An alloc whose evictions made room that others took this many times takes
// any placement with room on its next try (rerun_state::alloc_waits).
constexpr unsigned contended_alloc_waits = 3;
fence_ptr never_signaled() {
  static const std::uint64_t context = fence::allocate_context();
  return fence::create(context, 1);
}

// ---------------------------------------------------------------------------
// Encoding a handler's result. Most results are a wire body or a status;
// export adds its fd, wait hands the session a fence to wait for.

template <class R>
route_outcome to_outcome(const wire::frame_header& h, const result<R>& r) {
  return {.reply = {wire::encode_reply(type_of(h), h.request_id, r), {}}, .wait = std::nullopt};
}

route_outcome to_outcome(const wire::frame_header& h, const status& s) {
  return {.reply = {wire::encode_reply(type_of(h), h.request_id, s), {}}, .wait = std::nullopt};
}

route_outcome to_outcome(const wire::frame_header& h, result<export_result>&& r) {
  if (!r) return to_outcome(h, result<wire::export_reply>(std::move(r).err()));
  export_result e = std::move(r).value();
  return {.reply = {wire::encode_reply(type_of(h), h.request_id, result<wire::export_reply>(e.body)),
                    std::move(e.fd)},
          .wait = std::nullopt};
}

route_outcome to_outcome(const wire::frame_header& h, result<fence_wait>&& r) {
  if (!r) return to_outcome(h, result<wire::wait_reply>(std::move(r).err()));
  return {.reply = {}, .wait = std::move(r).value()};
}

template <class Reply>
route_outcome to_outcome(const wire::frame_header& h, result<reply_or_wait<Reply>>&& r) {
  if (!r) return to_outcome(h, result<Reply>(std::move(r).err()));
  if (auto* w = std::get_if<fence_wait>(&*r)) return {.reply = {}, .wait = std::move(*w)};
  return to_outcome(h, result<Reply>(std::get<Reply>(std::move(*r))));
}

// Milliseconds from now to `deadline` for a fence_wait: at least 1 (a wait
// of 0 only tests), wait_forever_ms for no deadline.
std::uint32_t ms_until(fence_clock::time_point deadline) {
  if (deadline == fence_clock::time_point::max()) return wait_forever_ms;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(time_left(deadline)).count();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(left, 1, wait_forever_ms - 1));
}

// decode -> handler -> encode, for request message M and handler H.
template <class M, auto H>
route_outcome routed(session_context& ctx, const wire::frame& f) {
  using R = std::invoke_result_t<decltype(H), session_context&, const M&>;
  auto m = wire::decode_message<M>(f);
  if (!m) return to_outcome(f.header, R(std::move(m).err()));
  return to_outcome(f.header, H(ctx, *m));
}

// decode -> try handler T -> encode, or nullopt when T declines.
template <class M, auto T>
std::optional<route_outcome> try_routed(session_context& ctx, const wire::frame& f) {
  using R = typename std::invoke_result_t<decltype(T), session_context&, const M&>::value_type;
  auto m = wire::decode_message<M>(f);
  if (!m) return to_outcome(f.header, R(std::move(m).err()));
  auto r = T(ctx, *m);
  if (!r) return std::nullopt;
  return to_outcome(f.header, std::move(*r));
}

template <class M, auto H>
constexpr route route_of(run_on where) {
  return route{.type = M::type, .where = where, .run = &routed<M, H>, .try_run = nullptr};
}

// A pool route tried on the session first with T (handlers.hpp, try_run).
template <class M, auto H, auto T>
constexpr route tried_first(run_on where) {
  return route{.type = M::type, .where = where, .run = &routed<M, H>, .try_run = &try_routed<M, T>};
}

// The route table: one line per request type.
constexpr route routes[] = {
    route_of<wire::hello_request, hello>(run_on::session),
    // Inline when the first allowed domain has room now; eviction: the pool.
    tried_first<wire::alloc_request, alloc, try_alloc>(run_on::pool),
    tried_first<wire::free_request, free_buffer, try_free_buffer>(run_on::pool),
    // The manager mutex only.
    route_of<wire::share_request, share>(run_on::session),
    route_of<wire::export_request, export_buffer>(run_on::pool),
    route_of<wire::attach_request, attach>(run_on::pool),
    route_of<wire::detach_request, detach>(run_on::pool),
    route_of<wire::map_request, map>(run_on::pool),
    route_of<wire::unmap_request, unmap>(run_on::pool),
    route_of<wire::add_client_fence_request, add_client_fence>(run_on::pool),
    // Signaling runs the fence's callbacks, which never block (they only
    // post, signal and set atomics; core/fence.hpp).
    route_of<wire::signal_client_fence_request, signal_client_fence>(run_on::session),
    // Only looks the fence up; the session waits without blocking a thread.
    route_of<wire::wait_request, wait>(run_on::session),
    route_of<wire::validate_request, validate>(run_on::pool),
    route_of<wire::cpu_begin_request, cpu_begin>(run_on::pool),
    tried_first<wire::cpu_end_request, cpu_end, try_cpu_end>(run_on::pool),
    tried_first<wire::stats_request, stats, try_stats>(run_on::pool),
    route_of<wire::import_request, import_fd>(run_on::pool),
    route_of<wire::release_request, release_export>(run_on::pool),
    // The event log's leaf lock; at most max_trace_events events.
    route_of<wire::trace_request, trace>(run_on::session),
    // The manager mutex only.
    route_of<wire::advise_request, advise>(run_on::session),
};

// find_route() indexes the table by type.
constexpr bool table_in_type_order() {
  for (std::size_t i = 0; i < std::size(routes); ++i) {
    if (static_cast<std::size_t>(routes[i].type) != static_cast<std::size_t>(wire::msg_type_first_request) + i) {
      return false;
    }
  }
  return true;
}
static_assert(table_in_type_order(), "routes[] must list the request types in order, without gaps");

route_outcome error_outcome(const wire::frame_header& h, const error& e) {
  return {.reply = {wire::encode_error_reply(h.type, h.request_id, e), {}}, .wait = std::nullopt};
}

}  // namespace

std::span<const route> route_table() noexcept { return routes; }

const route* find_route(std::uint16_t type) noexcept {
  const auto first = static_cast<std::uint16_t>(wire::msg_type_first_request);
  if (type < first || type - first >= static_cast<int>(std::size(routes))) return nullptr;
  return &routes[type - first];
}

namespace {

// The answer to a request that is not run at all: before hello, or without
// a route. Never blocks.
std::optional<route_outcome> refusal(const route* r, session_context& ctx, const wire::frame& f) {
  if (f.header.type != static_cast<std::uint16_t>(wire::msg_type::hello) && !ctx.greeted.load()) {
    return error_outcome(f.header, fail(errc::bad_state, wire::type_name(f.header.type) + ": send hello first"));
  }
  // The parser passes only request types; one without a route is a request
  // this daemon's protocol knows but it does not serve (a newer request in
  // an older daemon).
  if (r == nullptr) {
    return error_outcome(f.header,
                         fail(errc::unsupported, wire::type_name(f.header.type) + ": not implemented by this xbufd"));
  }
  return std::nullopt;
}

}  // namespace

route_outcome run_route(const route* r, session_context& ctx, const wire::frame& f) {
  if (auto no = refusal(r, ctx, f)) return std::move(*no);
  return r->run(ctx, f);
}

std::optional<route_outcome> try_route(const route* r, session_context& ctx, const wire::frame& f) {
  if (auto no = refusal(r, ctx, f)) return no;
  if (r->where == run_on::session) return r->run(ctx, f);
  if (r->try_run == nullptr) return std::nullopt;
  return r->try_run(ctx, f);
}

outgoing_frame finish_wait(const wire::frame_header& request, const fence_wait& w) {
  result<wire::wait_reply> r = wire::wait_reply{.fence_error = w.fence->error()};
  if (!w.fence->is_signaled()) {
    r = fail(errc::timed_out,
             fence_name(w.id) + ": not signaled after " + std::to_string(w.timeout_ms) + " ms");
  }
  return {wire::encode_reply(type_of(request), request.request_id, r), {}};
}

outgoing_frame internal_error_reply(const wire::frame_header& request, std::string_view what) {
  return {wire::encode_error_reply(request.type, request.request_id,
                                   fail(errc::io_error, "xbufd internal error: " + std::string(what))),
          {}};
}

// ---------------------------------------------------------------------------
// Handlers.

result<wire::hello_reply> hello(session_context& ctx, const wire::hello_request& m) {
  if (m.version != wire::protocol_version) {
    return fail(errc::unsupported, "hello: client speaks version " + std::to_string(m.version) +
                                       ", xbufd speaks " + std::to_string(wire::protocol_version));
  }
  std::string name = m.client_name.substr(0, wire::max_name_bytes);
  ctx.log("client %u is '%s'", ctx.owner, name.c_str());
  ctx.clients.set_name(ctx.owner, std::move(name));
  ctx.greeted.store(true);
  return wire::hello_reply{.owner = ctx.owner};
}

namespace {

// alloc's request to the manager; starts the rerun state (its deadline).
// Errors: invalid_argument (unknown flags).
result<xbuf::alloc_request> alloc_begin(session_context& ctx, const wire::alloc_request& m) {
  if ((m.flags & ~wire::alloc_known_flags) != 0) {
    ctx.rerun.reset();
    return fail(errc::invalid_argument, "alloc: unknown flags " + std::to_string(m.flags));
  }
  if (!ctx.rerun) ctx.rerun.emplace().deadline = deadline_after(ctx.alloc_wait);
  xbuf::alloc_request req;
  req.size = m.size;
  req.alignment = m.alignment;
  req.placements = m.placements;
  req.cpu_access = (m.flags & wire::alloc_flag_cpu_access) != 0;
  req.no_evict = (m.flags & wire::alloc_flag_no_evict) != 0;
  req.name = m.name;
  req.cancel = &ctx.cancel;
  req.timeout = fence_clock::duration::zero();  // the session does the waiting
  req.caller_retries = ctx.rerun->alloc_waits < contended_alloc_waits && fence_clock::now() < ctx.rerun->deadline;
  return req;
}

// What alloc answers once the manager answered `r` to `req`.
result<reply_or_wait<wire::buffer_reply>> alloc_end(session_context& ctx, const wire::alloc_request& m,
                                                    const xbuf::alloc_request& req, result<buffer_id> r) {
  const auto deadline = ctx.rerun->deadline;
  if (!r && r.code() == errc::out_of_memory && ctx.pressure != nullptr && !ctx.cancel.cancelled()) {
    // No room even after eviction: what is in the way cannot move. Tell
    // every client (their idle chunks may be what fills the domain) and
    // try again for a short while as they give memory back.
    if (!ctx.rerun->pressure_until) {
      (void)ctx.pressure->report(req.placements.front(), m.size);
      ctx.rerun->pressure_until = std::min(deadline, fence_clock::now() + ctx.pressure_grace);
    }
    if (fence_clock::now() < *ctx.rerun->pressure_until) {
      return reply_or_wait<wire::buffer_reply>(fence_wait{
          .fence = never_signaled(), .id = 0, .timeout_ms = pressure_retry_ms, .rerun = true});
    }
  }
  const bool wait_more = !r && r.code() == errc::timed_out && !ctx.cancel.cancelled() &&
                         fence_clock::now() < deadline;
  if (!wait_more) {
    ctx.rerun.reset();
    if (!r) return std::move(r).err();
    return reply_or_wait<wire::buffer_reply>(wire::buffer_reply{*r});
  }
  // Memory is on its way back (evictions in flight): wait for it on the
  // session, then try again.
  ++ctx.rerun->alloc_waits;
  return reply_or_wait<wire::buffer_reply>(fence_wait{
      .fence = ctx.mm.room_fence(req.placements), .id = 0, .timeout_ms = ms_until(deadline), .rerun = true});
}

}  // namespace

result<reply_or_wait<wire::buffer_reply>> alloc(session_context& ctx, const wire::alloc_request& m) {
  auto req = alloc_begin(ctx, m);
  if (!req) return std::move(req).err();
  return alloc_end(ctx, m, *req, ctx.mm.allocate(ctx.owner, *req));
}

std::optional<result<reply_or_wait<wire::buffer_reply>>> try_alloc(session_context& ctx,
                                                                   const wire::alloc_request& m) {
  auto req = alloc_begin(ctx, m);
  if (!req) return result<reply_or_wait<wire::buffer_reply>>(std::move(req).err());
  auto r = ctx.mm.try_allocate(ctx.owner, *req);
  if (!r) return std::nullopt;  // the pool's alloc() starts again from alloc_begin: the same deadline
  return alloc_end(ctx, m, *req, std::move(*r));
}

status free_buffer(session_context& ctx, const wire::free_request& m) { return ctx.mm.free(ctx.owner, m.id); }

std::optional<status> try_free_buffer(session_context& ctx, const wire::free_request& m) {
  return ctx.mm.try_free(ctx.owner, m.id);
}

status release_export(session_context& ctx, const wire::release_request& m) {
  return ctx.mm.release_export(ctx.owner, m.id);
}

status share(session_context& ctx, const wire::share_request& m) {
  return ctx.mm.share(ctx.owner, m.buffer, m.with);
}

status advise(session_context& ctx, const wire::advise_request& m) { return ctx.mm.advise(ctx.owner, m.id, m.hint); }

result<reply_or_wait<export_result>> export_buffer(session_context& ctx, const wire::export_request& m) {
  if (!ctx.rerun) ctx.rerun.emplace().deadline = deadline_after(ctx.alloc_wait);
  // A move or clear of the buffer may be waiting for other work (a client's
  // fence): never wait for it on the pool - hand it to the session.
  auto r = ctx.mm.export_fd(ctx.owner, m.id, fence_clock::duration::zero());
  if (!r && r.code() == errc::timed_out && !ctx.cancel.cancelled() && fence_clock::now() < ctx.rerun->deadline) {
    if (auto pending = ctx.mm.pending_moves(ctx.owner, m.id)) {
      return reply_or_wait<export_result>(fence_wait{
          .fence = *pending, .id = 0, .timeout_ms = ms_until(ctx.rerun->deadline), .rerun = true});
    }
  }
  ctx.rerun.reset();
  if (!r) return std::move(r).err();
  return reply_or_wait<export_result>(
      export_result{.body = {.offset = r->offset, .size = r->size, .kind = r->kind}, .fd = unique_fd(r->fd)});
}

result<wire::attach_reply> attach(session_context& ctx, const wire::attach_request& m) {
  xbuf::attach_request req;
  req.device = m.device;
  req.mode = m.mode;
  req.peer_capable = m.peer_capable;
  // Called under the manager's locks: only hand the event over.
  req.move_notify = [events = ctx.events](const move_notice& n) {
    post_event(events, wire::move_notify_event{.attachment = n.attachment, .buffer = n.buffer, .from = n.from,
                                               .to = n.to});
  };
  auto r = ctx.mm.attach(ctx.owner, m.buffer, req, &ctx.cancel);
  if (!r) return std::move(r).err();
  return wire::attach_reply{*r};
}

status detach(session_context& ctx, const wire::detach_request& m) { return ctx.mm.detach(ctx.owner, m.id); }

result<wire::map_reply> map(session_context& ctx, const wire::map_request& m) {
  auto r = ctx.mm.map(ctx.owner, m.attachment, &ctx.cancel);
  if (!r) return std::move(r).err();
  wire::map_reply body{.where = r->where, .ranges = {}, .peer = r->peer, .reason = r->reason,
                       .generation = r->generation, .wait_fence = 0};
  // The manager's addresses are the daemon's (host pointers, device
  // addresses): meaningless to a client and a map of the daemon's memory.
  // The client gets where each range lies in the buffer's export; the
  // ranges cover the buffer in order, so that is the bytes before it.
  std::uint64_t offset = 0;
  for (const auto& a : r->ranges) {
    body.ranges.push_back({.offset = offset, .size = a.size});
    offset += a.size;
  }
  if (r->wait_for && !r->wait_for->is_signaled()) body.wait_fence = ctx.fences.track(r->wait_for, false);
  return body;
}

status unmap(session_context& ctx, const wire::unmap_request& m) { return ctx.mm.unmap(ctx.owner, m.id); }

result<wire::fence_reply> add_client_fence(session_context& ctx, const wire::add_client_fence_request& m) {
  fence_ptr fc = ctx.fences.make_client_fence();
  // No client fence may hold eviction (or another tenant) up for longer
  // than the daemon allows: none asked for is the cap, more is capped.
  const auto asked = std::chrono::milliseconds(m.deadline_ms);
  const auto within = m.deadline_ms == 0 ? ctx.max_fence_deadline : std::min<fence_clock::duration>(asked, ctx.max_fence_deadline);
  const fence_clock::time_point deadline = fence_clock::now() + within;
  if (auto s = ctx.mm.add_fence(ctx.owner, m.buffer, fc, m.usage, deadline); !s) return std::move(s).err();
  return wire::fence_reply{ctx.fences.track(std::move(fc), true)};
}

status signal_client_fence(session_context& ctx, const wire::signal_client_fence_request& m) {
  auto e = ctx.fences.find(m.fence);
  if (!e) return fail(errc::not_found, fence_name(m.fence) + ": unknown to this client");
  if (!e->client_made) {
    return fail(errc::permission_denied, fence_name(m.fence) + ": made by xbufd (a move), not by this client");
  }
  if (m.error > 0 || m.error < -4095) {
    return fail(errc::invalid_argument,
                fence_name(m.fence) + ": error " + std::to_string(m.error) + " is not 0 or a negative errno");
  }
  return e->fence->signal(m.error);
}

result<fence_wait> wait(session_context& ctx, const wire::wait_request& m) {
  auto e = ctx.fences.find(m.fence);
  if (!e) return fail(errc::not_found, fence_name(m.fence) + ": unknown to this client");
  return fence_wait{.fence = std::move(e->fence), .id = m.fence, .timeout_ms = m.timeout_ms};
}

result<wire::validate_reply> validate(session_context& ctx, const wire::validate_request& m) {
  auto r = ctx.mm.validate(ctx.owner, m.buffers, &ctx.cancel);
  if (!r) return std::move(r).err();
  return wire::validate_reply{.promoted = static_cast<std::uint32_t>(r->promoted),
                              .deferred = static_cast<std::uint32_t>(r->deferred),
                              .in_place = static_cast<std::uint32_t>(r->in_place),
                              .no_room = static_cast<std::uint32_t>(r->no_room)};
}

result<reply_or_wait<wire::cpu_begin_reply>> cpu_begin(session_context& ctx, const wire::cpu_begin_request& m) {
  if (ctx.rerun && ctx.rerun->cpu_buffer == m.buffer) {
    // Rerun after waiting: the access was begun by the first run.
    auto st = std::move(*ctx.rerun);
    ctx.rerun.reset();
    if (st.cpu_ready->is_signaled()) return reply_or_wait<wire::cpu_begin_reply>(wire::cpu_begin_reply{st.cpu_size});
    (void)ctx.mm.end_cpu_access(ctx.owner, m.buffer);
    if (ctx.cancel.cancelled()) {
      return fail(errc::cancelled, "begin_cpu_access buffer " + std::to_string(m.buffer) + ": cancelled");
    }
    return fail(errc::timed_out, "begin_cpu_access buffer " + std::to_string(m.buffer) +
                                     ": conflicting work not done after " + std::to_string(m.timeout_ms) + " ms");
  }
  ctx.rerun.reset();
  const fence_clock::duration timeout = m.timeout_ms == 0 ? wait_forever : std::chrono::milliseconds(m.timeout_ms);
  const auto deadline = deadline_after(timeout);
  const cpu_access_mode mode = m.write ? cpu_access_mode::write : cpu_access_mode::read;
  auto r = ctx.mm.start_cpu_access(ctx.owner, m.buffer, mode, std::min(timeout, ctx.alloc_wait), &ctx.cancel);
  if (!r) return std::move(r).err();
  if (r->ready->is_signaled()) return reply_or_wait<wire::cpu_begin_reply>(wire::cpu_begin_reply{r->mapping.size});
  if (m.timeout_ms != 0 && fence_clock::now() >= deadline) {
    (void)ctx.mm.end_cpu_access(ctx.owner, m.buffer);
    return fail(errc::timed_out, "begin_cpu_access buffer " + std::to_string(m.buffer) +
                                     ": conflicting work not done after " + std::to_string(m.timeout_ms) + " ms");
  }
  auto& st = ctx.rerun.emplace();
  st.deadline = deadline;
  st.cpu_buffer = m.buffer;
  st.cpu_ready = r->ready;
  st.cpu_size = r->mapping.size;
  return reply_or_wait<wire::cpu_begin_reply>(
      fence_wait{.fence = r->ready, .id = 0, .timeout_ms = ms_until(deadline), .rerun = true});
}

status cpu_end(session_context& ctx, const wire::cpu_end_request& m) {
  return ctx.mm.end_cpu_access(ctx.owner, m.id);
}

std::optional<status> try_cpu_end(session_context& ctx, const wire::cpu_end_request& m) {
  return ctx.mm.try_end_cpu_access(ctx.owner, m.id);
}

result<wire::import_reply> import_fd(session_context& ctx, const wire::import_request&) {
  // The fd came with this request's bytes (or is the oldest one this
  // client sent): used for the lookup, then closed with `fd`.
  auto fd = ctx.incoming_fds.take();
  if (!fd) return fail(errc::invalid_argument, "import: no fd came with the request (send it as SCM_RIGHTS)");
  auto r = ctx.mm.import_fd(ctx.owner, fd->get());
  if (!r) return std::move(r).err();
  return wire::import_reply{.buffer = r->id, .size = r->size, .where = r->where};
}

result<wire::stats_reply> stats(session_context& ctx, const wire::stats_request& /*m*/) {
  return collect_stats(ctx.mm, ctx.clients, ctx.owner, ctx.daemon_uid);
}

std::optional<result<wire::stats_reply>> try_stats(session_context& ctx, const wire::stats_request& m) {
  if (ctx.mm.placed_buffers() > stats_inline_buffers) return std::nullopt;
  return stats(ctx, m);
}

result<wire::trace_reply> trace(session_context& ctx, const wire::trace_request& m) {
  return collect_trace(ctx.mm, ctx.clients, ctx.owner, ctx.daemon_uid, m.since, m.max);
}

}  // namespace xbuf::server
