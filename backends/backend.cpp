// SPDX-License-Identifier: MIT
//
// backend.cpp - the argument checks every backend shares, and the defaults of
// the optional do_* functions.
//
// Why here: the public functions check once, so "copy: dst range ..." reads the
// same for sim, host, CUDA and HIP, and a backend's do_* may assume sane input.
// They also stop exceptions from std (bad_alloc from a vector, system_error
// from a thread) at the API boundary, turning them into errors.
#include "backends/backend.hpp"

#include <unistd.h>

#include <exception>
#include <new>
#include <string>

#include "core/guarded.hpp"

namespace xbuf {

namespace {

// Runs a do_* call, turning exceptions that escaped it into errors.
std::string prefix(const backend& b, std::string_view what) {
  return std::string(b.name()) + ": " + std::string(what) + ": ";
}

// Checks one operand of a copy or an export. `role` is "dst", "src" or "span".
status check_span(const backend& b, std::string_view what, std::string_view role,
                  const memory_span& s) {
  if (!s.block) {
    return fail(errc::invalid_argument, prefix(b, what) + std::string(role) + " block is null");
  }
  if (s.size == 0) {
    return fail(errc::invalid_argument, prefix(b, what) + std::string(role) + " range is empty (0 bytes)");
  }
  // Written so that offset + size cannot overflow.
  if (s.offset > s.block->size || s.size > s.block->size - s.offset) {
    return fail(errc::invalid_argument,
                prefix(b, what) + std::string(role) + " range [" + std::to_string(s.offset) + ", +" +
                    std::to_string(s.size) + ") lies outside its " + std::to_string(s.block->size) +
                    "-byte " + std::string(to_string(s.block->kind)) + " block");
  }
  return ok();
}

status check_device(const backend& b, std::string_view what, std::string_view role, int device) {
  const auto n = b.devices().size();
  if (device < 0 || static_cast<std::size_t>(device) >= n) {
    return fail(errc::no_device, prefix(b, what) + std::string(role) + " " + std::to_string(device) +
                                     " does not exist (" + std::to_string(n) + " device" +
                                     (n == 1 ? "" : "s") + ")");
  }
  return ok();
}

}  // namespace

result<memory_block_ptr> backend::allocate_device(int device, std::size_t bytes) {
  if (auto s = check_device(*this, "allocate_device", "device", device); !s) return s.err();
  if (bytes == 0) {
    return fail(errc::invalid_argument, prefix(*this, "allocate_device") + "device " +
                                            devices_[static_cast<std::size_t>(device)].name +
                                            ": 0 bytes requested");
  }
  return guarded(name(), "allocate_device", [&] { return do_allocate_device(device, bytes); });
}

result<memory_block_ptr> backend::allocate_host(std::size_t bytes, bool pinned, int numa_node) {
  if (bytes == 0) {
    return fail(errc::invalid_argument, prefix(*this, "allocate_host") + "0 bytes requested");
  }
  if (numa_node < -1) {
    return fail(errc::invalid_argument, prefix(*this, "allocate_host") + "NUMA node " +
                                            std::to_string(numa_node) +
                                            " is not a node (-1 means no binding)");
  }
  if (pinned && !caps_.pinned_host) {
    return fail(errc::unsupported, prefix(*this, "allocate_host") +
                                       "pinned host memory is not supported by this backend");
  }
  return guarded(name(), "allocate_host", [&] { return do_allocate_host(bytes, pinned, numa_node); });
}

result<fence_ptr> backend::copy(const memory_span& dst, const memory_span& src,
                                std::span<const fence_ptr> wait_for) {
  if (auto s = check_span(*this, "copy", "dst", dst); !s) return s.err();
  if (auto s = check_span(*this, "copy", "src", src); !s) return s.err();
  if (dst.size != src.size) {
    return fail(errc::invalid_argument, prefix(*this, "copy") + "size mismatch: dst range is " +
                                            std::to_string(dst.size) + " bytes, src range is " +
                                            std::to_string(src.size) + " bytes");
  }
  // Engines copy front to back in chunks; overlapping ranges would read bytes
  // already overwritten. Nobody needs it (moves go between placements).
  if (dst.block == src.block && dst.offset < src.offset + src.size &&
      src.offset < dst.offset + dst.size) {
    return fail(errc::invalid_argument,
                prefix(*this, "copy") + "dst [" + std::to_string(dst.offset) + ", +" +
                    std::to_string(dst.size) + ") and src [" + std::to_string(src.offset) + ", +" +
                    std::to_string(src.size) + ") overlap within one block");
  }
  for (std::size_t i = 0; i < wait_for.size(); ++i) {
    if (!wait_for[i]) {
      return fail(errc::invalid_argument,
                  prefix(*this, "copy") + "wait_for[" + std::to_string(i) + "] is a null fence");
    }
  }
  return guarded(name(), "copy", [&] { return do_copy(dst, src, wait_for); });
}

result<fence_ptr> backend::fill(const memory_span& dst, std::uint8_t value,
                                std::span<const fence_ptr> wait_for) {
  if (auto s = check_span(*this, "fill", "dst", dst); !s) return s.err();
  for (std::size_t i = 0; i < wait_for.size(); ++i) {
    if (!wait_for[i]) {
      return fail(errc::invalid_argument,
                  prefix(*this, "fill") + "wait_for[" + std::to_string(i) + "] is a null fence");
    }
  }
  if (!caps_.fill) {
    return fail(errc::unsupported, prefix(*this, "fill") + "this backend cannot fill memory");
  }
  return guarded(name(), "fill", [&] { return do_fill(dst, value, wait_for); });
}

bool backend::release_range(const memory_span& span) noexcept {
  if (!span.block) return true;
  return do_release_range(span);
}

result<exported_memory> backend::export_fd(const memory_span& span) {
  if (auto s = check_span(*this, "export_fd", "span", span); !s) return s.err();
  return guarded(name(), "export_fd", [&] { return do_export_fd(span); });
}

result<memory_block_ptr> backend::import_fd(const exported_memory& exported, int device) {
  // Every early return closes the fd: the contract takes ownership on failure too.
  auto reject = [&](errc code, std::string msg) -> result<memory_block_ptr> {
    if (exported.fd >= 0) ::close(exported.fd);
    return fail(code, prefix(*this, "import_fd") + std::move(msg));
  };
  if (exported.fd < 0) return reject(errc::invalid_argument, "fd " + std::to_string(exported.fd) + " is not a file descriptor");
  if (exported.size == 0) return reject(errc::invalid_argument, "exported range is empty (0 bytes)");
  if (exported.kind == memory_kind::device) {
    if (device == -1) return reject(errc::invalid_argument, "device memory needs a local device to import into (got -1)");
    if (auto s = check_device(*this, "import_fd", "device", device); !s) {
      if (exported.fd >= 0) ::close(exported.fd);
      return s.err();
    }
  } else if (device != -1) {
    return reject(errc::invalid_argument, std::string(to_string(exported.kind)) +
                                              " memory is imported with device -1, not " +
                                              std::to_string(device));
  }
  return guarded(name(), "import_fd", [&] { return do_import_fd(exported, device); });
}

result<std::optional<bool>> backend::can_access_peer(int device, int peer) {
  if (auto s = check_device(*this, "can_access_peer", "device", device); !s) return s.err();
  if (auto s = check_device(*this, "can_access_peer", "peer", peer); !s) return s.err();
  return do_can_access_peer(device, peer);
}

result<std::optional<int>> backend::link_count(int device, int peer) {
  if (auto s = check_device(*this, "link_count", "device", device); !s) return s.err();
  if (auto s = check_device(*this, "link_count", "peer", peer); !s) return s.err();
  return do_link_count(device, peer);
}

result<fence_ptr> backend::do_fill(const memory_span& dst, std::uint8_t, std::span<const fence_ptr>) {
  return fail(errc::unsupported, prefix(*this, "fill") + "this backend cannot fill " +
                                     std::string(to_string(dst.block->kind)) + " memory");
}

result<exported_memory> backend::do_export_fd(const memory_span& span) {
  return fail(errc::unsupported, prefix(*this, "export_fd") + "this backend cannot export " +
                                     std::string(to_string(span.block->kind)) +
                                     " memory as a file descriptor");
}

result<memory_block_ptr> backend::do_import_fd(const exported_memory& exported, int /*device*/) {
  ::close(exported.fd);
  return fail(errc::unsupported, prefix(*this, "import_fd") + "this backend cannot import " +
                                     std::string(to_string(exported.kind)) +
                                     " memory from a file descriptor");
}

std::optional<bool> backend::do_can_access_peer(int /*device*/, int /*peer*/) { return std::nullopt; }

std::optional<int> backend::do_link_count(int /*device*/, int /*peer*/) { return std::nullopt; }

}  // namespace xbuf
