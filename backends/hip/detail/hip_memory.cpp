// SPDX-License-Identifier: MIT
#include "backends/hip/detail/hip_memory.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/hip/hip_error.hpp"
#include "core/errno_text.hpp"

namespace xbuf::hip_detail {

namespace {

std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

std::string on_device(const hip_device& dev, std::size_t bytes) {
  return "device " + std::to_string(dev.index) + ", " + std::to_string(bytes) + " bytes";
}

error with_free_memory(const hip_device& dev, error e) {
  if (e.code != errc::out_of_memory) return e;
  std::size_t free_bytes = 0;
  std::size_t total = 0;
  if (dev.runtime->hipMemGetInfo(&free_bytes, &total) == hipSuccess) {
    e.message += "; device " + std::to_string(dev.index) + " has " + std::to_string(free_bytes) + " of " +
                 std::to_string(total) + " bytes free";
  }
  return e;
}

status map_handle(const hip_device& dev, vmm_block& block, std::size_t size) {
  const hip_runtime& rt = *dev.runtime;
  void* ptr = nullptr;
  if (hipError_t rc = rt.hipMemAddressReserve(&ptr, size, dev.granularity, nullptr, 0); rc != hipSuccess) {
    return hip_error(&rt, rc, "hipMemAddressReserve(" + on_device(dev, size) + ")");
  }
  if (hipError_t rc = rt.hipMemMap(ptr, size, 0, block.handle, 0); rc != hipSuccess) {
    (void)rt.hipMemAddressFree(ptr, size);
    return hip_error(&rt, rc, "hipMemMap(" + on_device(dev, size) + ")");
  }
  std::vector<hip_vmm_abi::access_desc> access;
  auto grant = [&](int d) {
    hip_vmm_abi::access_desc a{};
    a.location.type = hip_vmm_abi::location_device;
    a.location.id = d;
    a.flags = hip_vmm_abi::access_read_write;
    access.push_back(a);
  };
  grant(dev.index);
  for (int p : dev.peers) grant(p);
  if (hipError_t rc = rt.hipMemSetAccess(ptr, size, access.data(), access.size()); rc != hipSuccess) {
    (void)rt.hipMemUnmap(ptr, size);
    (void)rt.hipMemAddressFree(ptr, size);
    return hip_error(&rt, rc, "hipMemSetAccess(" + on_device(dev, size) + ")");
  }
  block.base = ptr;
  block.mapped = size;
  return {};
}

status register_host(const hip_device& registrar, host_block& block) {
  device_scope scope(registrar);
  if (auto s = scope.check("hipHostRegister"); !s) return s;
  const hipError_t rc = registrar.runtime->hipHostRegister(block.mapping.ptr, block.mapping.size,
                                                           hipHostRegisterPortable | hipHostRegisterMapped);
  if (rc != hipSuccess) {
    return hip_error(registrar.runtime.get(), rc,
                     "hipHostRegister(" + std::to_string(block.mapping.size) + " bytes, portable)");
  }
  block.registered = true;
  return {};
}

}  // namespace

vmm_block::~vmm_block() {
  const hip_runtime& rt = *owner->runtime;
  if (mapped != 0) {
    (void)rt.hipMemUnmap(base, mapped);
    (void)rt.hipMemAddressFree(base, mapped);
  }
  if (handle != nullptr) (void)rt.hipMemRelease(handle);
}

malloc_block::~malloc_block() {
  device_scope scope(*owner);
  if (device_ptr != 0) (void)owner->runtime->hipFree(reinterpret_cast<void*>(device_ptr));
}

host_block::~host_block() {
  if (registered) (void)owner->runtime->hipHostUnregister(mapping.ptr);
  gpu::release(mapping);
}

result<memory_block_ptr> allocate_vmm(const std::shared_ptr<hip_device>& dev, std::size_t bytes) {
  const hip_runtime& rt = *dev->runtime;
  device_scope scope(*dev);
  if (auto s = scope.check("hipMemCreate"); !s) return std::move(s).err();
  const std::size_t size = round_up(bytes, dev->granularity);
  hip_vmm_abi::allocation_prop prop{};
  prop.type = hip_vmm_abi::allocation_pinned;
  prop.requested_handle_type = hip_vmm_abi::handle_posix_fd;
  prop.location.type = hip_vmm_abi::location_device;
  prop.location.id = dev->index;
  auto block = std::make_shared<vmm_block>();
  block->owner = dev;
  if (hipError_t rc = rt.hipMemCreate(&block->handle, size, &prop, 0); rc != hipSuccess) {
    block->handle = nullptr;
    return with_free_memory(*dev, hip_error(&rt, rc, "hipMemCreate(" + on_device(*dev, size) + ")"));
  }
  if (auto s = map_handle(*dev, *block, size); !s) return with_free_memory(*dev, std::move(s).err());
  block->kind = memory_kind::device;
  block->device = dev->index;
  block->size = size;
  block->device_ptr = reinterpret_cast<std::uintptr_t>(block->base);
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> allocate_malloc(const std::shared_ptr<hip_device>& dev, std::size_t bytes) {
  const hip_runtime& rt = *dev->runtime;
  device_scope scope(*dev);
  if (auto s = scope.check("hipMalloc"); !s) return std::move(s).err();
  const std::size_t size = round_up(bytes, dev->granularity);
  void* ptr = nullptr;
  if (hipError_t rc = rt.hipMalloc(&ptr, size); rc != hipSuccess) {
    return with_free_memory(*dev, hip_error(&rt, rc, "hipMalloc(" + on_device(*dev, size) + ")"));
  }
  auto block = std::make_shared<malloc_block>();
  block->owner = dev;
  block->kind = memory_kind::device;
  block->device = dev->index;
  block->size = size;
  block->device_ptr = reinterpret_cast<std::uintptr_t>(ptr);
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> allocate_host(const std::shared_ptr<hip_device>& registrar, std::size_t bytes,
                                       bool pinned, int numa_node) {
  auto mapping = gpu::create_host_mapping(bytes, numa_node, pinned ? "xbuf-hip-pinned" : "xbuf-hip-host");
  if (!mapping) return std::move(mapping).err();
  auto block = std::make_shared<host_block>();
  block->owner = registrar;
  block->mapping = *mapping;
  if (pinned) {
    if (auto s = register_host(*registrar, *block); !s) return std::move(s).err();
  }
  block->kind = pinned ? memory_kind::host_pinned : memory_kind::host_pageable;
  block->size = bytes;
  block->host_ptr = block->mapping.ptr;
  block->device_ptr = reinterpret_cast<std::uintptr_t>(block->mapping.ptr);
  block->fd = block->mapping.fd;
  block->numa_node = block->mapping.numa_node;
  return memory_block_ptr(std::move(block));
}

result<exported_memory> export_block(const memory_span& span) {
  const auto* b = span.block.get();
  if (const auto* vmm = dynamic_cast<const vmm_block*>(b)) {
    int fd = -1;
    const hipError_t rc = vmm->owner->runtime->hipMemExportToShareableHandle(&fd, vmm->handle,
                                                                            hip_vmm_abi::handle_posix_fd, 0);
    if (rc != hipSuccess) {
      auto e = hip_error(vmm->owner->runtime.get(), rc,
                         "hipMemExportToShareableHandle(device " + std::to_string(vmm->device) + ")");
      if (e.code != errc::out_of_memory && e.code != errc::unsupported) e.code = errc::io_error;
      return e;
    }
    const auto base_offset = static_cast<std::size_t>(vmm->device_ptr - reinterpret_cast<std::uintptr_t>(vmm->base));
    return exported_memory{fd, base_offset + span.offset, span.size, memory_kind::device};
  }
  if (const auto* host = dynamic_cast<const host_block*>(b)) {
    const int fd = ::dup(host->mapping.fd);
    if (fd < 0) return fail(errc::io_error, "dup(host block fd): " + errno_text(errno));
    const auto base_offset = static_cast<std::size_t>(static_cast<const char*>(host->host_ptr) -
                                                      static_cast<const char*>(host->mapping.ptr));
    return exported_memory{fd, base_offset + span.offset, span.size, host->kind};
  }
  return fail(errc::unsupported, "HIP device memory from hipMalloc cannot be exported by fd (its IPC handle "
                                 "is not a file descriptor; hipMemCreate needs a HIP >= 6 runtime and VMM support)");
}

result<memory_block_ptr> import_device(const std::shared_ptr<hip_device>& dev, const exported_memory& exported) {
  const int fd = exported.fd;
  if (!dev->vmm) {
    ::close(fd);
    return fail(errc::unsupported, "HIP device " + std::to_string(dev->index) +
                                       " cannot import fd memory (no hipMemCreate support)");
  }
  const hip_runtime& rt = *dev->runtime;
  auto block = std::make_shared<vmm_block>();
  block->owner = dev;
  const hipError_t rc = rt.hipMemImportFromShareableHandle(
      &block->handle, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)), hip_vmm_abi::handle_posix_fd);
  ::close(fd);
  if (rc != hipSuccess) {
    block->handle = nullptr;
    auto e = hip_error(&rt, rc, "hipMemImportFromShareableHandle(fd " + std::to_string(fd) + ")");
    if (e.code == errc::io_error) e.code = errc::invalid_argument;
    return e;
  }
  const std::size_t size = round_up(exported.offset + exported.size, dev->granularity);
  if (auto s = map_handle(*dev, *block, size); !s) return std::move(s).err();
  block->kind = memory_kind::device;
  block->device = dev->index;
  block->size = exported.size;
  block->device_ptr = reinterpret_cast<std::uintptr_t>(block->base) + exported.offset;
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> import_host(const std::shared_ptr<hip_device>& registrar, const exported_memory& exported) {
  auto mapping = gpu::map_host_fd(exported.fd, exported.offset + exported.size);
  if (!mapping) {
    ::close(exported.fd);
    return std::move(mapping).err();
  }
  auto block = std::make_shared<host_block>();
  block->owner = registrar;
  block->mapping = *mapping;
  if (exported.kind == memory_kind::host_pinned) {
    if (auto s = register_host(*registrar, *block); !s) return std::move(s).err();
  }
  block->kind = exported.kind;
  block->size = exported.size;
  block->host_ptr = static_cast<char*>(block->mapping.ptr) + exported.offset;
  block->device_ptr = reinterpret_cast<std::uintptr_t>(block->host_ptr);
  block->fd = block->mapping.fd;
  return memory_block_ptr(std::move(block));
}

}  // namespace xbuf::hip_detail
