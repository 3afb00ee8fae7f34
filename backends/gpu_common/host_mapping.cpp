// SPDX-License-Identifier: MIT
#include "backends/gpu_common/host_mapping.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <string>

#include "core/errno_text.hpp"

namespace xbuf::gpu {

namespace {

// MPOL_BIND from <linux/mempolicy.h>; called through syscall() so that xbuf
// needs neither libnuma nor its headers.
constexpr int mpol_bind = 2;

std::size_t page_size() noexcept {
  const long p = sysconf(_SC_PAGESIZE);
  return p > 0 ? static_cast<std::size_t>(p) : 4096;
}

error errno_error(const std::string& what, int err) {
  const errc code = err == ENOMEM ? errc::out_of_memory : errc::io_error;
  return fail(code, what + ": " + errno_text(err));
}

}  // namespace

bool numa_node_exists(int node) noexcept {
  if (node < 0) return false;
  struct stat st {};
  const std::string path = "/sys/devices/system/node/node" + std::to_string(node);
  return ::stat(path.c_str(), &st) == 0;
}

result<host_mapping> create_host_mapping(std::size_t bytes, int numa_node, const std::string& name) {
  if (bytes == 0) return fail(errc::invalid_argument, "host memory: 0 bytes requested");
  if (numa_node >= 0 && !numa_node_exists(numa_node)) {
    return fail(errc::invalid_argument,
                "host memory: NUMA node " + std::to_string(numa_node) + " does not exist on this machine");
  }
  const std::size_t page = page_size();
  if (bytes > SIZE_MAX - page) return fail(errc::invalid_argument, "host memory: size overflows");
  host_mapping m;
  m.size = (bytes + page - 1) / page * page;

  m.fd = ::memfd_create(name.c_str(), MFD_CLOEXEC);
  if (m.fd < 0) return errno_error("memfd_create(" + name + ")", errno);
  if (::ftruncate(m.fd, static_cast<off_t>(m.size)) != 0) {
    const int err = errno;
    ::close(m.fd);
    return errno_error("ftruncate(" + name + ", " + std::to_string(m.size) + " bytes)", err);
  }
  void* p = ::mmap(nullptr, m.size, PROT_READ | PROT_WRITE, MAP_SHARED, m.fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::close(m.fd);
    return errno_error("mmap(" + name + ", " + std::to_string(m.size) + " bytes)", err);
  }
  m.ptr = p;
  if (numa_node >= 0) {
    unsigned long mask[16] = {};  // nodes 0..1023
    constexpr int bits = static_cast<int>(sizeof(unsigned long) * CHAR_BIT);
    if (numa_node >= 16 * bits) {
      release(m);
      return fail(errc::invalid_argument, "host memory: NUMA node " + std::to_string(numa_node) + " out of range");
    }
    mask[numa_node / bits] = 1UL << (numa_node % bits);
    if (::syscall(SYS_mbind, p, m.size, mpol_bind, mask, 16 * bits + 1, 0) != 0) {
      const int err = errno;
      release(m);
      return errno_error("mbind(" + name + " to node " + std::to_string(numa_node) + ")", err);
    }
    m.numa_node = numa_node;
  }
  return m;
}

result<host_mapping> map_host_fd(int fd, std::size_t bytes) {
  if (fd < 0 || bytes == 0) return fail(errc::invalid_argument, "host memory import: bad fd or size");
  struct stat st {};
  if (::fstat(fd, &st) != 0) return errno_error("fstat(fd " + std::to_string(fd) + ")", errno);
  if (static_cast<std::size_t>(st.st_size) < bytes) {
    return fail(errc::invalid_argument, "host memory import: fd " + std::to_string(fd) + " holds " +
                                            std::to_string(st.st_size) + " bytes, " +
                                            std::to_string(bytes) + " expected");
  }
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_error("mmap(fd " + std::to_string(fd) + ")", errno);
  host_mapping m;
  m.ptr = p;
  m.size = bytes;
  m.fd = fd;
  return m;
}

void release(host_mapping& m) noexcept {
  if (m.ptr != nullptr) ::munmap(m.ptr, m.size);
  if (m.fd >= 0) ::close(m.fd);
  m = host_mapping{};
}

}  // namespace xbuf::gpu
