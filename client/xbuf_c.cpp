// SPDX-License-Identifier: MIT
#include "client/xbuf_c.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "client/remote_client.hpp"

struct xbuf_client {
  xbuf::client::remote_client rc;
};

namespace {

thread_local std::string last_error;

int set_error(const xbuf::error& e) {
  last_error = e.describe();
  return xbuf::to_errno(e.code);
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
  std::mutex mutex;
  std::optional<xbuf::client::remote_client> client;  // guarded by mutex
  struct region {
    xbuf::buffer_id buffer;
    void* base;           // what mmap returned (page-aligned)
    std::size_t length;   // what was mapped
  };
  std::map<void*, region> regions;  // guarded by mutex; key = pointer handed out
};
torch_state& torch() {
  static torch_state s;
  return s;
}

}  // namespace

extern "C" {

xbuf_client* xbuf_connect(const char* socket_path, const char* client_name) {
  auto c = xbuf::client::remote_client::connect(socket_path_or_default(socket_path),
                                                client_name != nullptr ? client_name : "libxbuf-c");
  if (!c) {
    set_error(c.err());
    return nullptr;
  }
  return new xbuf_client{std::move(*c)};
}

void xbuf_disconnect(xbuf_client* c) { delete c; }

int xbuf_alloc(xbuf_client* c, uint64_t size, int device, uint64_t* out_buffer) {
  if (c == nullptr || out_buffer == nullptr) return set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_alloc: null argument"));
  auto r = c->rc.alloc(size, placements_for(device), "c-abi");
  if (!r) return set_error(r.err());
  *out_buffer = *r;
  return 0;
}

int xbuf_free(xbuf_client* c, uint64_t buffer) {
  if (c == nullptr) return set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_free: null client"));
  auto r = c->rc.free(buffer);
  if (!r) return set_error(r.err());
  return 0;
}

int xbuf_export_fd(xbuf_client* c, uint64_t buffer, int* out_fd, uint64_t* out_offset, uint64_t* out_size) {
  if (c == nullptr || out_fd == nullptr) {
    return set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_export_fd: null argument"));
  }
  auto r = c->rc.export_fd(buffer);
  if (!r) return set_error(r.err());
  *out_fd = r->fd;
  if (out_offset != nullptr) *out_offset = r->offset;
  if (out_size != nullptr) *out_size = r->size;
  return 0;
}

const char* xbuf_last_error(void) { return last_error.c_str(); }

void* xbuf_torch_malloc(ssize_t size, int device, void* /*stream*/) {
  if (size <= 0) {
    set_error(xbuf::fail(xbuf::errc::invalid_argument, "xbuf_torch_malloc: size " + std::to_string(size)));
    return nullptr;
  }
  auto& t = torch();
  std::lock_guard lock(t.mutex);
  if (!t.client) {
    auto c = xbuf::client::remote_client::connect(socket_path_or_default(nullptr), "torch");
    if (!c) {
      set_error(c.err());
      return nullptr;
    }
    t.client.emplace(std::move(*c));
  }
  auto& rc = *t.client;
  auto b = rc.alloc(static_cast<std::uint64_t>(size), placements_for(device), "torch",
                    xbuf::wire::alloc_flag_no_evict | xbuf::wire::alloc_flag_cpu_access);
  if (!b) {
    set_error(b.err());
    return nullptr;
  }
  auto e = rc.export_fd(*b);
  if (!e) {
    set_error(e.err());
    (void)rc.free(*b);
    return nullptr;
  }
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = e->offset & ~(page - 1);
  const std::size_t length = static_cast<std::size_t>(e->offset - start + e->size);
  void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, e->fd, static_cast<off_t>(start));
  ::close(e->fd);
  if (base == MAP_FAILED) {
    set_error(xbuf::fail(xbuf::errc::unsupported, "xbuf_torch_malloc: buffer " + std::to_string(*b) +
                                                      ": its exported memory cannot be mapped on the CPU"));
    (void)rc.free(*b);
    return nullptr;
  }
  void* p = static_cast<char*>(base) + (e->offset - start);
  t.regions.emplace(p, torch_state::region{*b, base, length});
  return p;
}

void xbuf_torch_free(void* ptr, ssize_t /*size*/, int /*device*/, void* /*stream*/) {
  if (ptr == nullptr) return;
  auto& t = torch();
  std::lock_guard lock(t.mutex);
  auto it = t.regions.find(ptr);
  if (it == t.regions.end()) return;  // not ours: freeing never fails
  ::munmap(it->second.base, it->second.length);
  if (t.client) (void)t.client->free(it->second.buffer);
  t.regions.erase(it);
}

}  // extern "C"
