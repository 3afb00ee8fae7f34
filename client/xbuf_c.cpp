// SPDX-License-Identifier: MIT
//
// xbuf_c.cpp - the C ABI (xbuf_c.h) over xbuf::client::allocator.
//
// Overview
//   An xbuf_client is one allocator (embedded or daemon). Each extern "C"
//   function checks its arguments (the first bad one is -EINVAL naming the
//   function and the argument), converts the C types to the allocator's
//   and its result back, and records a failure's message for
//   xbuf_last_error().
//
// Rules
//   - Every extern "C" body runs inside guarded(): no exception
//     (std::bad_alloc from a string, anything from std) crosses into C,
//     where unwinding is undefined. A stopped exception becomes a failure
//     like any other: -ENOMEM for bad_alloc, -EIO otherwise (NULL for the
//     pointer functions), with xbuf_last_error() naming the function.
//   - Out parameters are written only once the call succeeded.
//   - The torch state's mutex is taken only by the two torch entry points
//     and is held across the allocator's calls (it is above the
//     allocator's own locks); the allocator never calls back into it.
#include "client/xbuf_c.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "client/allocator.hpp"
#include "client/chunk_pool.hpp"
#include "client/deferred_frees.hpp"
#include "client/local_gpus.hpp"
#include "client/stats_json.hpp"
#include "core/guarded.hpp"
#include "core/memory_kind.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

struct xbuf_client {
  std::unique_ptr<xbuf::client::allocator> a;  // never null
};

namespace {

using xbuf::errc;
using xbuf::client::allocator;

thread_local std::string last_error;
// Set instead of last_error when even recording the message failed (no
// memory for the string): a fixed text needs none.
thread_local const char* last_error_fixed = nullptr;

// Records `e` as the calling thread's last error; returns its -errno.
// Never throws.
int set_error(const xbuf::error& e) noexcept {
  try {
    last_error = e.describe();
    last_error_fixed = nullptr;
  } catch (...) {
    last_error_fixed = "libxbuf: out of memory while recording an error";
  }
  return xbuf::to_errno(e.code);
}

// An allocator's error, with the C function that met it in front.
int set_error(const char* fn, const xbuf::error& e) noexcept {
  try {
    return set_error(e.prefixed(fn));
  } catch (...) {
    return set_error(e);
  }
}

// -EINVAL: argument `what` of `fn` cannot be right.
int bad_arg(const char* fn, std::string_view what) {
  return set_error(xbuf::fail(errc::invalid_argument, std::string(fn) + ": " + std::string(what)));
}

// 0, or the status's error recorded.
int done(const char* fn, const xbuf::status& st) { return st ? 0 : set_error(fn, st.err()); }

// What a guarded function returns when its body threw: the error's -errno
// for the int functions, NULL for the pointer ones, nothing for void.
template <class R>
R failed_value(int code) noexcept {
  if constexpr (std::is_same_v<R, int>) {
    return code;
  } else if constexpr (std::is_pointer_v<R>) {
    return nullptr;
  } else {
    static_assert(std::is_void_v<R>, "guarded() returns int, a pointer or nothing");
  }
}

// Runs the body of C function `function` (body(function)); see the file
// comment. What an escaping exception means is decided once, by
// core/guarded.hpp.
template <class F>
auto guarded(const char* function, F&& body) noexcept -> decltype(body(function)) {
  using R = decltype(body(function));
  try {
    return body(function);
  } catch (...) {
    const auto e = xbuf::detail::boundary_error("libxbuf", function, std::current_exception());
    return failed_value<R>(set_error(e));
  }
}

// ---- conversions -------------------------------------------------------------

std::optional<xbuf::placement> placement_of(const xbuf_placement& p) {
  switch (p.kind) {
    case XBUF_PLACEMENT_VRAM:
      if (p.device < 0) return std::nullopt;
      return xbuf::placement::vram(p.device);
    case XBUF_PLACEMENT_PINNED: return xbuf::placement::pinned();
    case XBUF_PLACEMENT_PAGEABLE:
      if (p.device < -1) return std::nullopt;
      return xbuf::placement::pageable(p.device);
    default: return std::nullopt;
  }
}

int kind_of(xbuf::memory_kind k) {
  switch (k) {
    case xbuf::memory_kind::device: return XBUF_PLACEMENT_VRAM;
    case xbuf::memory_kind::host_pinned: return XBUF_PLACEMENT_PINNED;
    case xbuf::memory_kind::host_pageable: return XBUF_PLACEMENT_PAGEABLE;
  }
  return XBUF_PLACEMENT_PAGEABLE;
}
static_assert(XBUF_PLACEMENT_VRAM == static_cast<int>(xbuf::memory_kind::device) &&
                  XBUF_PLACEMENT_PINNED == static_cast<int>(xbuf::memory_kind::host_pinned) &&
                  XBUF_PLACEMENT_PAGEABLE == static_cast<int>(xbuf::memory_kind::host_pageable),
              "xbuf_c.h says its placement kinds are memory_kind's numbers");

xbuf_placement c_placement(const xbuf::placement& p) {
  return xbuf_placement{kind_of(p.kind), p.kind == xbuf::memory_kind::host_pageable ? p.node : p.device};
}

std::optional<xbuf::eviction_hint> hint_of(int hint) {
  switch (hint) {
    case XBUF_HINT_NONE: return xbuf::eviction_hint::none;
    case XBUF_HINT_DONE: return xbuf::eviction_hint::done;
    case XBUF_HINT_KEEP: return xbuf::eviction_hint::keep;
    default: return std::nullopt;
  }
}

std::optional<xbuf::fence_usage> usage_of(int usage) {
  switch (usage) {
    case XBUF_USAGE_WRITE: return xbuf::fence_usage::write;
    case XBUF_USAGE_READ: return xbuf::fence_usage::read;
    default: return std::nullopt;
  }
}

std::optional<xbuf::attach_mode> attach_mode_of(int mode) {
  switch (mode) {
    case XBUF_ATTACH_PINNED: return xbuf::attach_mode::pinned;
    case XBUF_ATTACH_DYNAMIC: return xbuf::attach_mode::dynamic;
    default: return std::nullopt;
  }
}

// An int timeout of xbuf_c.h: XBUF_DEFAULT or >= 0 milliseconds.
std::optional<std::chrono::milliseconds> timeout_of(int ms) {
  if (ms == XBUF_DEFAULT) return xbuf::client::default_wait;
  if (ms < 0) return std::nullopt;
  return std::chrono::milliseconds(ms);
}

xbuf_mapping c_mapping(const xbuf::client::mapped_view& v) {
  return xbuf_mapping{.data = v.data,
                      .size = v.size,
                      .where = c_placement(v.where),
                      .peer = v.peer ? 1 : 0,
                      .generation = v.generation};
}

std::vector<xbuf::placement> placements_for(int device) {
  if (device < 0) return {xbuf::placement::pageable()};
  return {xbuf::placement::vram(device), xbuf::placement::pinned(), xbuf::placement::pageable()};
}

// The names every bad-input message uses for the handle and out pointers.
constexpr std::string_view null_client = "client is NULL";

// ---- the torch allocator -------------------------------------------------------

// The process-wide state of xbuf_torch_malloc / xbuf_torch_free.
struct torch_state {
  xbuf::mutex mutex;
  std::unique_ptr<allocator> alloc XBUF_GUARDED_BY(mutex);
  // Sizes up to small_limit come from a chunk_pool per device (a tensor
  // allocation per op would otherwise be a round trip each); larger ones
  // get a buffer of their own, in `regions`.
  std::map<int, std::unique_ptr<xbuf::client::chunk_pool>> pools XBUF_GUARDED_BY(mutex);
  struct region {
    xbuf::buffer_id buffer;
    xbuf::attachment_id attachment;
  };
  std::map<void*, region> regions XBUF_GUARDED_BY(mutex);  // key = the pointer handed out
  // Set by the allocator's memory-pressure callback (which runs inside one
  // of our calls, with `mutex` held: it only stores); the next malloc or
  // free gives the pools' idle chunks back. Events are read at most every
  // poll_interval, since pool allocations make no call that would.
  std::shared_ptr<std::atomic<bool>> pressed = std::make_shared<std::atomic<bool>>(false);
  std::chrono::steady_clock::time_point last_poll XBUF_GUARDED_BY(mutex);
  // Frees waiting for their stream's work (deferred_frees.hpp), on this
  // process's GPUs; `backend` (the allocator's, asked once) says whether
  // there are any (sim VRAM is host memory: nothing to wait for).
  xbuf::client::detail::local_gpus gpus;
  std::optional<std::string> backend XBUF_GUARDED_BY(mutex);
  xbuf::client::detail::deferred_frees deferred XBUF_GUARDED_BY(mutex);
};
constexpr std::uint64_t small_limit = 256 << 10;
constexpr std::chrono::milliseconds poll_interval{10};

// Never destroyed: a framework frees its tensors from its own exit-time
// destructors, which may run after ours would; the daemon (or the process
// ending) releases what is still held.
torch_state& torch() {
  static torch_state* s = new torch_state;
  return *s;
}

// The shared allocator, made on first use; a failure to make it is not
// kept (the next malloc tries again, e.g. once the daemon is up).
xbuf::result<allocator*> torch_allocator(torch_state& t) XBUF_REQUIRES(t.mutex) {
  if (!t.alloc) {
    const char* mode = std::getenv("XBUF_MODE");
    const char* backend = std::getenv("XBUF_BACKEND");
    xbuf::client::embedded_options o;
    if (backend != nullptr && *backend != '\0') o.backend = backend;
    auto a = mode != nullptr && std::string_view(mode) == "embedded" ? xbuf::client::open_embedded(o)
                                                                     : xbuf::client::connect_daemon("", "torch");
    if (!a) return std::move(a).err();
    t.alloc = std::move(*a);
    t.alloc->on_memory_pressure([pressed = t.pressed](const xbuf::client::pressure_event&) { pressed->store(true); });
  }
  return t.alloc.get();
}

void free_now(torch_state& t, void* ptr) XBUF_REQUIRES(t.mutex);

// Reads the allocator's events when poll_interval has passed, gives idle
// chunks back after a memory_pressure among them, and frees what waited
// for a stream that got there.
void torch_watch(torch_state& t) XBUF_REQUIRES(t.mutex) {
  for (void* p : t.deferred.poll()) free_now(t, p);
  const auto now = std::chrono::steady_clock::now();
  if (now - t.last_poll >= poll_interval) {
    t.last_poll = now;
    (void)t.alloc->poll_events(std::chrono::milliseconds(0));
  }
  if (t.pressed->exchange(false)) {
    for (auto& [device, pool] : t.pools) pool->release_idle();
  }
}

xbuf::client::chunk_pool& torch_pool(torch_state& t, int device) XBUF_REQUIRES(t.mutex) {
  auto& pool = t.pools[device];
  if (!pool) {
    xbuf::client::chunk_pool_options o;
    o.placements = placements_for(device);
    o.device = device < 0 ? -1 : device;
    o.max_block = small_limit;
    o.watch_pressure = false;  // torch_watch does, for every device's pool
    pool = std::make_unique<xbuf::client::chunk_pool>(*t.alloc, o);
  }
  return *pool;
}

void* torch_malloc(const char* fn, ssize_t size, int device) {
  if (size <= 0) {
    bad_arg(fn, "size " + std::to_string(size) + " is not positive");
    return nullptr;
  }
  auto& t = torch();
  xbuf::mutex_lock lock(t.mutex);
  auto got = torch_allocator(t);
  if (!got) {
    set_error(fn, got.err());
    return nullptr;
  }
  torch_watch(t);
  if (static_cast<std::uint64_t>(size) <= small_limit) {
    auto p = torch_pool(t, device).allocate(static_cast<std::uint64_t>(size));
    if (!p) {
      set_error(fn, p.err());
      return nullptr;
    }
    return *p;
  }
  allocator& a = **got;
  auto b = a.alloc({.size = static_cast<std::uint64_t>(size),
                    .placements = placements_for(device),
                    .name = "torch",
                    .no_evict = true});
  if (!b) {
    set_error(fn, b.err());
    return nullptr;
  }
  auto at = a.attach(*b, device < 0 ? -1 : device, xbuf::attach_mode::pinned);
  if (!at) {
    set_error(fn, at.err());
    (void)a.free(*b);
    return nullptr;
  }
  auto m = a.map(*at);
  if (!m) {
    set_error(fn, m.err());
    (void)a.detach(*at);
    (void)a.free(*b);
    return nullptr;
  }
  t.regions.emplace(m->data, torch_state::region{*b, *at});
  return m->data;
}

// This process's GPU `device` when the allocator's VRAM is a GPU runtime's
// (its frees wait for their stream); null for the sim, the CPU, or a
// device this process cannot open (then nothing of it was handed out).
std::shared_ptr<xbuf::gpu::gpu_device> torch_gpu(torch_state& t, int device) XBUF_REQUIRES(t.mutex) {
  if (device < 0) return nullptr;
  if (!t.backend) {
    auto s = t.alloc->stats();
    if (!s) return nullptr;
    t.backend = s->backend;
  }
  auto d = t.gpus.for_backend(*t.backend, device);
  return d ? *d : nullptr;
}

void torch_free(void* ptr, int device, void* stream) {
  if (ptr == nullptr) return;
  auto& t = torch();
  xbuf::mutex_lock lock(t.mutex);
  if (!t.alloc) return;
  torch_watch(t);
  // Kernels queued on `stream` may still use the memory: it goes back once
  // the stream gets past them. Where no event can be recorded, the stream
  // is waited for here (slower, never wrong).
  if (auto gpu = torch_gpu(t, device)) {
    if (t.deferred.defer(gpu, static_cast<xbuf::gpu::stream_t>(stream), ptr)) return;
    xbuf::gpu::device_scope scope(*gpu);
    if (scope.ok()) gpu->runtime->stream_synchronize(static_cast<xbuf::gpu::stream_t>(stream));
  }
  free_now(t, ptr);
}

void free_now(torch_state& t, void* ptr) {
  for (auto& [device, pool] : t.pools) {
    if (pool->deallocate(ptr)) return;  // else not this pool's (not_found) or freed already
  }
  auto it = t.regions.find(ptr);
  if (it == t.regions.end()) return;  // not ours: freeing never fails
  // Detach first: a buffer freed while attached lives on until detached.
  (void)t.alloc->detach(it->second.attachment);
  (void)t.alloc->free(it->second.buffer);
  t.regions.erase(it);
}

// `text` in malloc'ed memory (the caller may be C: xbuf_string_free is
// free()), or NULL with the error recorded.
char* malloc_copy(const char* fn, const std::string& text) {
  auto* out = static_cast<char*>(std::malloc(text.size() + 1));
  if (out == nullptr) {
    set_error(xbuf::fail(errc::out_of_memory,
                         std::string(fn) + ": " + std::to_string(text.size() + 1) + " bytes for the JSON text"));
    return nullptr;
  }
  std::memcpy(out, text.c_str(), text.size() + 1);
  return out;
}

}  // namespace

extern "C" {

// ---- handles -------------------------------------------------------------------

xbuf_client* xbuf_connect(const char* socket_path, const char* client_name) {
  return guarded(__func__, [&](const char* fn) -> xbuf_client* {
    auto a = xbuf::client::connect_daemon(socket_path != nullptr ? socket_path : "",
                                          client_name != nullptr ? client_name : "libxbuf-c");
    if (!a) {
      set_error(fn, a.err());
      return nullptr;
    }
    return new xbuf_client{std::move(*a)};
  });
}

xbuf_client* xbuf_open_embedded(const char* backend, int sim_devices, uint64_t sim_vram, uint64_t pinned,
                                uint64_t pageable, int promote_interval_ms) {
  return guarded(__func__, [&](const char* fn) -> xbuf_client* {
    if (sim_devices < 0) {
      bad_arg(fn, "sim_devices " + std::to_string(sim_devices) + " is negative");
      return nullptr;
    }
    if (promote_interval_ms < 0 && promote_interval_ms != XBUF_DEFAULT) {
      bad_arg(fn, "promote_interval_ms " + std::to_string(promote_interval_ms) + " is neither >= 0 nor XBUF_DEFAULT");
      return nullptr;
    }
    xbuf::client::embedded_options o;
    if (backend != nullptr) o.backend = backend;
    if (sim_devices != 0) o.sim_devices = sim_devices;
    if (sim_vram != 0) o.sim_vram = sim_vram;
    if (pinned != 0) o.pinned = pinned;
    if (pageable != 0) o.pageable = pageable;
    if (promote_interval_ms != XBUF_DEFAULT) o.promote_interval = std::chrono::milliseconds(promote_interval_ms);
    auto a = xbuf::client::open_embedded(o);
    if (!a) {
      set_error(fn, a.err());
      return nullptr;
    }
    return new xbuf_client{std::move(*a)};
  });
}

void xbuf_disconnect(xbuf_client* c) {
  guarded(__func__, [&](const char*) { delete c; });
}

const char* xbuf_mode(const xbuf_client* c) {
  return guarded(__func__, [&](const char* fn) -> const char* {
    if (c == nullptr) {
      bad_arg(fn, null_client);
      return nullptr;
    }
    // The allocator's view is not promised to be NUL-terminated: hand out
    // literals of our own.
    return c->a->mode() == "embedded" ? "embedded" : "daemon";
  });
}

int xbuf_owner(const xbuf_client* c, uint32_t* out_owner) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_owner == nullptr) return bad_arg(fn, "out_owner is NULL");
    *out_owner = c->a->owner();
    return 0;
  });
}

// ---- buffers -------------------------------------------------------------------

int xbuf_alloc_ex(xbuf_client* c, uint64_t size, const xbuf_placement* placements, size_t n_placements,
                  uint32_t flags, const char* name, uint64_t alignment, uint64_t* out_buffer) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_buffer == nullptr) return bad_arg(fn, "out_buffer is NULL");
    if (placements == nullptr || n_placements == 0) return bad_arg(fn, "placements is NULL or empty");
    if ((flags & ~(XBUF_ALLOC_CPU_ACCESS | XBUF_ALLOC_NO_EVICT)) != 0) {
      return bad_arg(fn, "flags " + std::to_string(flags) + " has bits that are no XBUF_ALLOC_* flag");
    }
    xbuf::client::alloc_options o;
    o.size = size;
    o.name = name != nullptr ? name : "";
    o.cpu_access = (flags & XBUF_ALLOC_CPU_ACCESS) != 0;
    o.no_evict = (flags & XBUF_ALLOC_NO_EVICT) != 0;
    o.alignment = alignment;
    for (std::size_t i = 0; i < n_placements; ++i) {
      auto p = placement_of(placements[i]);
      if (!p) {
        return bad_arg(fn, "placements[" + std::to_string(i) + "] = {kind " + std::to_string(placements[i].kind) +
                               ", device " + std::to_string(placements[i].device) +
                               "} is no XBUF_PLACEMENT_* (VRAM needs a device >= 0)");
      }
      o.placements.push_back(*p);
    }
    auto r = c->a->alloc(o);
    if (!r) return set_error(fn, r.err());
    *out_buffer = *r;
    return 0;
  });
}

int xbuf_alloc(xbuf_client* c, uint64_t size, int device, uint64_t* out_buffer) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_buffer == nullptr) return bad_arg(fn, "out_buffer is NULL");
    auto r = c->a->alloc({.size = size, .placements = placements_for(device), .name = "c-abi"});
    if (!r) return set_error(fn, r.err());
    *out_buffer = *r;
    return 0;
  });
}

int xbuf_free(xbuf_client* c, uint64_t buffer) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    return done(fn, c->a->free(buffer));
  });
}

int xbuf_release_export(xbuf_client* c, uint64_t buffer) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    return done(fn, c->a->release_export(buffer));
  });
}

int xbuf_share(xbuf_client* c, uint64_t buffer, uint32_t with) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    return done(fn, c->a->share(buffer, with));
  });
}

int xbuf_advise(xbuf_client* c, uint64_t buffer, int hint) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    auto h = hint_of(hint);
    if (!h) return bad_arg(fn, "hint " + std::to_string(hint) + " is not an XBUF_HINT_*");
    return done(fn, c->a->advise(buffer, *h));
  });
}

int xbuf_export(xbuf_client* c, uint64_t buffer, xbuf_export_info* out) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out == nullptr) return bad_arg(fn, "out is NULL");
    auto r = c->a->export_fd(buffer);
    if (!r) return set_error(fn, r.err());
    *out = xbuf_export_info{.fd = r->fd, .offset = r->offset, .size = r->size, .kind = kind_of(r->kind)};
    return 0;
  });
}

int xbuf_import(xbuf_client* c, int fd, uint64_t* out_buffer, uint64_t* out_size) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_buffer == nullptr) return bad_arg(fn, "out_buffer is NULL");
    auto r = c->a->import_fd(fd);
    if (!r) return set_error(fn, r.err());
    *out_buffer = r->buffer;
    if (out_size != nullptr) *out_size = r->size;
    return 0;
  });
}

int xbuf_export_fd(xbuf_client* c, uint64_t buffer, int* out_fd, uint64_t* out_offset, uint64_t* out_size) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_fd == nullptr) return bad_arg(fn, "out_fd is NULL");
    auto r = c->a->export_fd(buffer);
    if (!r) return set_error(fn, r.err());
    *out_fd = r->fd;
    if (out_offset != nullptr) *out_offset = r->offset;
    if (out_size != nullptr) *out_size = r->size;
    return 0;
  });
}

// ---- attachments and views -------------------------------------------------------

int xbuf_attach(xbuf_client* c, uint64_t buffer, int device, int mode, int peer_capable, uint64_t* out_attachment) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_attachment == nullptr) return bad_arg(fn, "out_attachment is NULL");
    auto m = attach_mode_of(mode);
    if (!m) return bad_arg(fn, "mode " + std::to_string(mode) + " is no XBUF_ATTACH_*");
    auto r = c->a->attach(buffer, device, *m, peer_capable != 0);
    if (!r) return set_error(fn, r.err());
    *out_attachment = *r;
    return 0;
  });
}

int xbuf_detach(xbuf_client* c, uint64_t attachment) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    return done(fn, c->a->detach(attachment));
  });
}

int xbuf_map(xbuf_client* c, uint64_t attachment, int timeout_ms, xbuf_mapping* out) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out == nullptr) return bad_arg(fn, "out is NULL");
    auto t = timeout_of(timeout_ms);
    if (!t) return bad_arg(fn, "timeout_ms " + std::to_string(timeout_ms) + " is neither >= 0 nor XBUF_DEFAULT");
    auto r = c->a->map(attachment, *t);
    if (!r) return set_error(fn, r.err());
    *out = c_mapping(*r);
    return 0;
  });
}

int xbuf_unmap(xbuf_client* c, uint64_t attachment) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    return done(fn, c->a->unmap(attachment));
  });
}

int xbuf_begin_use(xbuf_client* c, uint64_t attachment, int usage, int timeout_ms, xbuf_mapping* out) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out == nullptr) return bad_arg(fn, "out is NULL");
    auto u = usage_of(usage);
    if (!u) return bad_arg(fn, "usage " + std::to_string(usage) + " is no XBUF_USAGE_*");
    auto t = timeout_of(timeout_ms);
    if (!t) return bad_arg(fn, "timeout_ms " + std::to_string(timeout_ms) + " is neither >= 0 nor XBUF_DEFAULT");
    auto r = c->a->begin_use(attachment, *u, *t);
    if (!r) return set_error(fn, r.err());
    *out = c_mapping(*r);
    return 0;
  });
}

int xbuf_end_use(xbuf_client* c, uint64_t attachment, int error) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (error > 0) return bad_arg(fn, "error " + std::to_string(error) + " is not 0 or a negative errno");
    return done(fn, c->a->end_use(attachment, error));
  });
}

// ---- fences ----------------------------------------------------------------------

int xbuf_add_fence(xbuf_client* c, uint64_t buffer, int usage, uint32_t deadline_ms, uint64_t* out_fence) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_fence == nullptr) return bad_arg(fn, "out_fence is NULL");
    auto u = usage_of(usage);
    if (!u) return bad_arg(fn, "usage " + std::to_string(usage) + " is no XBUF_USAGE_*");
    auto r = c->a->add_fence(buffer, *u, std::chrono::milliseconds(deadline_ms));
    if (!r) return set_error(fn, r.err());
    *out_fence = *r;
    return 0;
  });
}

int xbuf_signal_fence(xbuf_client* c, uint64_t fence, int error) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (error > 0) return bad_arg(fn, "error " + std::to_string(error) + " is not 0 or a negative errno");
    return done(fn, c->a->signal_fence(fence, error));
  });
}

int xbuf_wait_fence(xbuf_client* c, uint64_t fence, uint32_t timeout_ms, int* out_fence_error) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    auto r = c->a->wait(fence, std::chrono::milliseconds(timeout_ms));
    if (!r) return set_error(fn, r.err());
    if (out_fence_error != nullptr) *out_fence_error = *r;
    return 0;
  });
}

// ---- residency, CPU access, stats --------------------------------------------------

int xbuf_validate(xbuf_client* c, const uint64_t* ids, size_t n, xbuf_validate_counts* out) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out == nullptr) return bad_arg(fn, "out is NULL");
    if (ids == nullptr && n != 0) return bad_arg(fn, "ids is NULL but n is " + std::to_string(n));
    static_assert(std::is_same_v<uint64_t, xbuf::buffer_id>, "xbuf_validate passes its ids through");
    auto r = c->a->validate(std::span<const xbuf::buffer_id>(ids, n));
    if (!r) return set_error(fn, r.err());
    *out = xbuf_validate_counts{
        .promoted = r->promoted, .deferred = r->deferred, .in_place = r->in_place, .no_room = r->no_room};
    return 0;
  });
}

int xbuf_cpu_begin(xbuf_client* c, uint64_t buffer, int write, int timeout_ms, void** out_data, uint64_t* out_size) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (out_data == nullptr) return bad_arg(fn, "out_data is NULL");
    auto t = timeout_of(timeout_ms);
    if (!t) return bad_arg(fn, "timeout_ms " + std::to_string(timeout_ms) + " is neither >= 0 nor XBUF_DEFAULT");
    auto r = c->a->cpu_begin(buffer, write != 0, *t);
    if (!r) return set_error(fn, r.err());
    *out_data = r->data;
    if (out_size != nullptr) *out_size = r->size;
    return 0;
  });
}

int xbuf_cpu_end(xbuf_client* c, uint64_t buffer) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    return done(fn, c->a->cpu_end(buffer));
  });
}

char* xbuf_stats_json(xbuf_client* c) {
  return guarded(__func__, [&](const char* fn) -> char* {
    if (c == nullptr) {
      bad_arg(fn, null_client);
      return nullptr;
    }
    auto r = c->a->stats();
    if (!r) {
      set_error(fn, r.err());
      return nullptr;
    }
    return malloc_copy(fn, xbuf::client::to_json(*r));
  });
}

char* xbuf_torch_stats_json(void) {
  return guarded(__func__, [&](const char* fn) -> char* {
    auto& t = torch();
    xbuf::mutex_lock lock(t.mutex);
    if (!t.alloc) {
      set_error(xbuf::fail(errc::bad_state, std::string(fn) + ": no xbuf_torch_malloc has succeeded yet"));
      return nullptr;
    }
    auto r = t.alloc->stats();
    if (!r) {
      set_error(fn, r.err());
      return nullptr;
    }
    return malloc_copy(fn, xbuf::client::to_json(*r));
  });
}

void xbuf_string_free(char* s) { std::free(s); }

// ---- events ------------------------------------------------------------------------

int xbuf_set_move_callback(xbuf_client* c, xbuf_move_callback cb, void* user) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (cb == nullptr) {
      c->a->on_move({});
      return 0;
    }
    c->a->on_move([cb, user](const xbuf::client::move_event& e) {
      const xbuf_move_event ce{
          .attachment = e.attachment, .buffer = e.buffer, .from = c_placement(e.from), .to = c_placement(e.to)};
      cb(user, &ce);
    });
    return 0;
  });
}

int xbuf_set_pressure_callback(xbuf_client* c, xbuf_pressure_callback cb, void* user) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (cb == nullptr) {
      c->a->on_memory_pressure({});
      return 0;
    }
    c->a->on_memory_pressure([cb, user](const xbuf::client::pressure_event& e) {
      const xbuf_pressure_event ce{.where = c_placement(e.where), .bytes = e.bytes};
      cb(user, &ce);
    });
    return 0;
  });
}

int xbuf_poll_events(xbuf_client* c, int timeout_ms) {
  return guarded(__func__, [&](const char* fn) {
    if (c == nullptr) return bad_arg(fn, null_client);
    if (timeout_ms < 0) return bad_arg(fn, "timeout_ms " + std::to_string(timeout_ms) + " is negative");
    auto r = c->a->poll_events(std::chrono::milliseconds(timeout_ms));
    if (!r) return set_error(fn, r.err());
    return static_cast<int>(std::min<std::size_t>(*r, INT_MAX));
  });
}

// ---- errors --------------------------------------------------------------------------

const char* xbuf_last_error(void) { return last_error_fixed != nullptr ? last_error_fixed : last_error.c_str(); }

// ---- PyTorch -------------------------------------------------------------------------

// The allocation's stream needs nothing: memory handed out is free of every
// stream's work (frees wait for theirs).
void* xbuf_torch_malloc(ssize_t size, int device, void* /*stream*/) {
  return guarded(__func__, [&](const char* fn) { return torch_malloc(fn, size, device); });
}

void xbuf_torch_free(void* ptr, ssize_t /*size*/, int device, void* stream) {
  guarded(__func__, [&](const char*) { torch_free(ptr, device, stream); });
}

}  // extern "C"
