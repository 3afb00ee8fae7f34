// SPDX-License-Identifier: MIT
//
// xbuf_c.cpp - the C ABI over remote_client.
//
// Every extern "C" function runs its body inside guarded(): no exception
// (std::bad_alloc from a string, anything from std) crosses into C, where
// unwinding is undefined. A stopped exception becomes a failure like any
// other: -ENOMEM for bad_alloc, -EIO otherwise (NULL for the pointer
// functions), with xbuf_last_error() naming the function.
#include "client/xbuf_c.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <new>
#include <optional>
#include <string>
#include <type_traits>

#include "client/remote_client.hpp"
#include "core/guarded.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

struct xbuf_client {
  xbuf::client::remote_client rc;
};

namespace {

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

// Runs the body of C function `function`; see the file comment. What an
// escaping exception means is decided once, by core/guarded.hpp.
template <class F>
auto guarded(const char* function, F&& body) noexcept -> decltype(body()) {
  using R = decltype(body());
  try {
    return body();
  } catch (...) {
    const auto e = xbuf::detail::boundary_error("libxbuf", function, std::current_exception());
    return failed_value<R>(set_error(e));
  }
}

std::string socket_path_or_default(const char* p) {
  if (p != nullptr && *p != '\0') return p;
  if (const char* e = std::getenv("XBUF_SOCKET"); e != nullptr && *e != '\0') return e;
  return xbuf::wire::default_socket_path();
}

std::vector<xbuf::placement> placements_for(int device) {
  if (device < 0) return {xbuf::placement::pageable()};
  return {xbuf::placement::vram(device), xbuf::placement::pinned(), xbuf::placement::pageable()};
}

// The torch allocator's process-wide state.
struct torch_state {
  xbuf::mutex mutex;
  std::optional<xbuf::client::remote_client> client XBUF_GUARDED_BY(mutex);
  struct region {
    xbuf::buffer_id buffer;
    void* base;           // what mmap returned (page-aligned)
    std::size_t length;   // what was mapped
  };
  std::map<void*, region> regions XBUF_GUARDED_BY(mutex);  // key = pointer handed out
};
torch_state& torch() {
  static torch_state s;
  return s;
}

// The shared connection, made on first use.
xbuf::result<xbuf::client::remote_client*> torch_client(torch_state& t) XBUF_REQUIRES(t.mutex) {
  if (!t.client) {
    auto c = xbuf::client::remote_client::connect(socket_path_or_default(nullptr), "torch");
    if (!c) return std::move(c).err();
    t.client.emplace(std::move(*c));
  }
  return &*t.client;
}

// An exported buffer mapped on the CPU.
struct cpu_view {
  torch_state::region region;
  void* data = nullptr;  // the buffer's first byte (region.base + the offset within the page)
};

xbuf::result<cpu_view> map_export(xbuf::buffer_id b, const xbuf::client::exported_buffer& e) {
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = e.offset & ~(page - 1);
  const std::size_t length = static_cast<std::size_t>(e.offset - start + e.size);
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, e.fd, static_cast<off_t>(start));
  if (base == MAP_FAILED) {
    return xbuf::fail(xbuf::errc::unsupported, "xbuf_torch_malloc: buffer " + std::to_string(b) +
                                                   ": its exported memory cannot be mapped on the CPU");
  }
  return cpu_view{.region = {b, base, length}, .data = static_cast<char*>(base) + (e.offset - start)};
}

void* torch_malloc(ssize_t size, int device) {
  if (size <= 0) {
    set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_torch_malloc: size " + std::to_string(size)));
    return nullptr;
  }
  auto& t = torch();
  xbuf::mutex_lock lock(t.mutex);
  auto rc = torch_client(t);
  if (!rc) {
    set_error(rc.err());
    return nullptr;
  }
  xbuf::client::remote_client& c = **rc;
  auto b = c.alloc(static_cast<std::uint64_t>(size), placements_for(device), "torch",
                   xbuf::wire::alloc_flag_no_evict | xbuf::wire::alloc_flag_cpu_access);
  if (!b) {
    set_error(b.err());
    return nullptr;
  }
  auto e = c.export_fd(*b);
  if (!e) {
    set_error(e.err());
    (void)c.free(*b);
    return nullptr;
  }
  auto m = map_export(*b, *e);
  ::close(e->fd);
  if (!m) {
    set_error(m.err());
    (void)c.free(*b);
    return nullptr;
  }
  t.regions.emplace(m->data, m->region);
  return m->data;
}

void torch_free(void* ptr) {
  if (ptr == nullptr) return;
  auto& t = torch();
  xbuf::mutex_lock lock(t.mutex);
  auto it = t.regions.find(ptr);
  if (it == t.regions.end()) return;  // not ours: freeing never fails
  ::munmap(it->second.base, it->second.length);
  if (t.client) (void)t.client->free(it->second.buffer);
  t.regions.erase(it);
}

}  // namespace

extern "C" {

xbuf_client* xbuf_connect(const char* socket_path, const char* client_name) {
  return guarded("xbuf_connect", [&]() -> xbuf_client* {
    auto c = xbuf::client::remote_client::connect(socket_path_or_default(socket_path),
                                                  client_name != nullptr ? client_name : "libxbuf-c");
    if (!c) {
      set_error(c.err());
      return nullptr;
    }
    return new xbuf_client{std::move(*c)};
  });
}

void xbuf_disconnect(xbuf_client* c) {
  guarded("xbuf_disconnect", [&] { delete c; });
}

int xbuf_alloc(xbuf_client* c, uint64_t size, int device, uint64_t* out_buffer) {
  return guarded("xbuf_alloc", [&] {
    if (c == nullptr || out_buffer == nullptr) {
      return set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_alloc: null argument"));
    }
    auto r = c->rc.alloc(size, placements_for(device), "c-abi");
    if (!r) return set_error(r.err());
    *out_buffer = *r;
    return 0;
  });
}

int xbuf_free(xbuf_client* c, uint64_t buffer) {
  return guarded("xbuf_free", [&] {
    if (c == nullptr) return set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_free: null client"));
    auto r = c->rc.free(buffer);
    if (!r) return set_error(r.err());
    return 0;
  });
}

int xbuf_export_fd(xbuf_client* c, uint64_t buffer, int* out_fd, uint64_t* out_offset, uint64_t* out_size) {
  return guarded("xbuf_export_fd", [&] {
    if (c == nullptr || out_fd == nullptr) {
      return set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_export_fd: null argument"));
    }
    auto r = c->rc.export_fd(buffer);
    if (!r) return set_error(r.err());
    *out_fd = r->fd;
    if (out_offset != nullptr) *out_offset = r->offset;
    if (out_size != nullptr) *out_size = r->size;
    return 0;
  });
}

const char* xbuf_last_error(void) { return last_error_fixed != nullptr ? last_error_fixed : last_error.c_str(); }

void* xbuf_torch_malloc(ssize_t size, int device, void* /*stream*/) {
  return guarded("xbuf_torch_malloc", [&] { return torch_malloc(size, device); });
}

void xbuf_torch_free(void* ptr, ssize_t /*size*/, int /*device*/, void* /*stream*/) {
  guarded("xbuf_torch_free", [&] { torch_free(ptr); });
}

}  // extern "C"
