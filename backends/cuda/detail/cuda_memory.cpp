// SPDX-License-Identifier: MIT
#include "backends/cuda/detail/cuda_memory.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backends/cuda/cuda_error.hpp"
#include "core/errno_text.hpp"

namespace xbuf::cuda_detail {

namespace {

std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

std::string on_device(const cuda_device& dev, std::size_t bytes) {
  return "device " + std::to_string(dev.index) + ", " + std::to_string(bytes) + " bytes";
}

// Adds "device N has F of T bytes free" to an out-of-memory error.
error with_free_memory(const cuda_device& dev, error e) {
  if (e.code != errc::out_of_memory) return e;
  std::size_t free_bytes = 0;
  std::size_t total = 0;
  if (dev.driver->cuMemGetInfo_v2(&free_bytes, &total) == CUDA_SUCCESS) {
    e.message += "; device " + std::to_string(dev.index) + " has " + std::to_string(free_bytes) + " of " +
                 std::to_string(total) + " bytes free";
  }
  return e;
}

// Reserves, maps and grants access to `size` bytes of `handle` (from offset
// 0), filling the block. Unwinds what it did on failure.
status map_handle(const cuda_device& dev, vmm_block& block, std::size_t size) {
  const cuda_driver& drv = *dev.driver;
  CUdeviceptr ptr = 0;
  if (CUresult rc = drv.cuMemAddressReserve(&ptr, size, dev.granularity, 0, 0); rc != CUDA_SUCCESS) {
    return cuda_error(&drv, rc, "cuMemAddressReserve(" + on_device(dev, size) + ")");
  }
  if (CUresult rc = drv.cuMemMap(ptr, size, 0, block.handle, 0); rc != CUDA_SUCCESS) {
    (void)drv.cuMemAddressFree(ptr, size);
    return cuda_error(&drv, rc, "cuMemMap(" + on_device(dev, size) + ")");
  }
  std::vector<CUmemAccessDesc> access;
  auto grant = [&](CUdevice d) {
    CUmemAccessDesc a{};
    a.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    a.location.id = d;
    a.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    access.push_back(a);
  };
  grant(dev.handle);
  for (CUdevice p : dev.peers) grant(p);
  if (CUresult rc = drv.cuMemSetAccess(ptr, size, access.data(), access.size()); rc != CUDA_SUCCESS) {
    (void)drv.cuMemUnmap(ptr, size);
    (void)drv.cuMemAddressFree(ptr, size);
    return cuda_error(&drv, rc, "cuMemSetAccess(" + on_device(dev, size) + ", " + std::to_string(access.size()) +
                                    " devices)");
  }
  block.base = ptr;
  block.mapped = size;
  return {};
}

}  // namespace

vmm_block::~vmm_block() {
  const cuda_driver& drv = *owner->driver;
  context_scope scope(*owner);
  if (mapped != 0) {
    (void)drv.cuMemUnmap(base, mapped);
    (void)drv.cuMemAddressFree(base, mapped);
  }
  // The physical memory goes when the last mapping and handle are gone,
  // also across processes that imported it.
  if (handle != 0) (void)drv.cuMemRelease(handle);
}

linear_block::~linear_block() {
  context_scope scope(*owner);
  if (scope.ok() && device_ptr != 0) (void)owner->driver->cuMemFree_v2(device_ptr);
}

host_block::~host_block() {
  if (registered) {
    context_scope scope(*owner);
    if (scope.ok()) (void)owner->driver->cuMemHostUnregister(mapping.ptr);
  }
  gpu::release(mapping);
}

result<memory_block_ptr> allocate_vmm(const std::shared_ptr<cuda_device>& dev, std::size_t bytes) {
  const cuda_driver& drv = *dev->driver;
  context_scope scope(*dev);
  if (auto s = scope.check("cuMemCreate"); !s) return std::move(s).err();
  const std::size_t size = round_up(bytes, dev->granularity);

  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = dev->handle;
  prop.requestedHandleTypes = dev->posix_fd ? CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR : CU_MEM_HANDLE_TYPE_NONE;

  auto block = std::make_shared<vmm_block>();
  block->owner = dev;
  if (CUresult rc = drv.cuMemCreate(&block->handle, size, &prop, 0); rc != CUDA_SUCCESS) {
    block->handle = 0;
    return with_free_memory(*dev, cuda_error(&drv, rc, "cuMemCreate(" + on_device(*dev, size) + ")"));
  }
  if (auto s = map_handle(*dev, *block, size); !s) return with_free_memory(*dev, std::move(s).err());
  block->exportable = dev->posix_fd;
  block->kind = memory_kind::device;
  block->device = dev->index;
  block->size = size;
  block->device_ptr = block->base;
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> allocate_linear(const std::shared_ptr<cuda_device>& dev, std::size_t bytes) {
  const cuda_driver& drv = *dev->driver;
  context_scope scope(*dev);
  if (auto s = scope.check("cuMemAlloc"); !s) return std::move(s).err();
  const std::size_t size = round_up(bytes, dev->granularity);
  auto block = std::make_shared<linear_block>();
  block->owner = dev;
  CUdeviceptr ptr = 0;
  if (CUresult rc = drv.cuMemAlloc_v2(&ptr, size); rc != CUDA_SUCCESS) {
    return with_free_memory(*dev, cuda_error(&drv, rc, "cuMemAlloc(" + on_device(*dev, size) + ")"));
  }
  block->kind = memory_kind::device;
  block->device = dev->index;
  block->size = size;
  block->device_ptr = ptr;
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> allocate_host(const std::shared_ptr<cuda_device>& registrar, std::size_t bytes,
                                       bool pinned, int numa_node) {
  auto mapping = gpu::create_host_mapping(bytes, numa_node, pinned ? "xbuf-cuda-pinned" : "xbuf-cuda-host");
  if (!mapping) return std::move(mapping).err();
  auto block = std::make_shared<host_block>();
  block->owner = registrar;
  block->mapping = *mapping;
  if (pinned) {
    context_scope scope(*registrar);
    if (auto s = scope.check("cuMemHostRegister"); !s) return std::move(s).err();
    // PORTABLE: pinned for every context, so any device's stream copies it
    // at full speed. DEVICEMAP: kernels may read it directly.
    const CUresult rc = registrar->driver->cuMemHostRegister_v2(
        block->mapping.ptr, block->mapping.size, CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP);
    if (rc != CUDA_SUCCESS) {
      return cuda_error(registrar->driver.get(), rc,
                        "cuMemHostRegister(" + std::to_string(block->mapping.size) + " bytes, portable)");
    }
    block->registered = true;
  }
  block->kind = pinned ? memory_kind::host_pinned : memory_kind::host_pageable;
  block->device = -1;
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
    if (!vmm->exportable) {
      return fail(errc::unsupported, "CUDA device " + std::to_string(vmm->device) +
                                         ": memory was not created with the POSIX-fd handle type "
                                         "(the device or driver does not support it)");
    }
    int fd = -1;
    context_scope scope(*vmm->owner);
    if (auto s = scope.check("cuMemExportToShareableHandle"); !s) return std::move(s).err();
    const CUresult rc = vmm->owner->driver->cuMemExportToShareableHandle(
        &fd, vmm->handle, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
    if (rc != CUDA_SUCCESS) {
      auto e = cuda_error(vmm->owner->driver.get(), rc,
                          "cuMemExportToShareableHandle(device " + std::to_string(vmm->device) + ", " +
                              std::to_string(vmm->size) + " bytes)");
      if (e.code != errc::out_of_memory) e.code = errc::io_error;
      return e;
    }
    // Imports map from offset 0 of the handle, so the offset is relative to
    // the allocation, which for an imported block starts before device_ptr.
    const std::size_t base_offset = static_cast<std::size_t>(vmm->device_ptr - vmm->base);
    return exported_memory{fd, base_offset + span.offset, span.size, memory_kind::device};
  }
  if (const auto* host = dynamic_cast<const host_block*>(b)) {
    const int fd = ::dup(host->mapping.fd);
    if (fd < 0) return fail(errc::io_error, "dup(host block fd): " + errno_text(errno));
    const auto base_offset = static_cast<std::size_t>(static_cast<const char*>(host->host_ptr) -
                                                      static_cast<const char*>(host->mapping.ptr));
    return exported_memory{fd, base_offset + span.offset, span.size, host->kind};
  }
  return fail(errc::unsupported, "CUDA device memory from cuMemAlloc cannot be exported by fd "
                                 "(VMM not available on this device or disabled)");
}

result<memory_block_ptr> import_device(const std::shared_ptr<cuda_device>& dev, const exported_memory& exported) {
  const int fd = exported.fd;
  const cuda_driver& drv = *dev->driver;
  if (!dev->posix_fd) {
    ::close(fd);
    return fail(errc::unsupported, "CUDA device " + std::to_string(dev->index) +
                                       " cannot import POSIX-fd memory handles");
  }
  context_scope scope(*dev);
  if (auto s = scope.check("cuMemImportFromShareableHandle"); !s) {
    ::close(fd);
    return std::move(s).err();
  }
  auto block = std::make_shared<vmm_block>();
  block->owner = dev;
  // For POSIX fds the "OS handle" argument is the fd itself, cast to a pointer.
  const CUresult rc = drv.cuMemImportFromShareableHandle(
      &block->handle, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)),
      CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  // The handle keeps the memory; the fd is ours to close either way.
  ::close(fd);
  if (rc != CUDA_SUCCESS) {
    block->handle = 0;
    auto e = cuda_error(&drv, rc, "cuMemImportFromShareableHandle(fd " + std::to_string(fd) + ", device " +
                                      std::to_string(dev->index) + ")");
    if (e.code == errc::io_error || e.code == errc::not_found) e.code = errc::invalid_argument;
    return e;
  }
  // cuMemMap maps from offset 0 of the handle; mapping up to the end of the
  // exported range (rounded to the granularity) stays inside the allocation,
  // whose size is a multiple of it.
  const std::size_t size = round_up(exported.offset + exported.size, dev->granularity);
  if (auto s = map_handle(*dev, *block, size); !s) return std::move(s).err();
  block->kind = memory_kind::device;
  block->device = dev->index;
  block->size = exported.size;
  block->device_ptr = block->base + exported.offset;
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> import_host(const std::shared_ptr<cuda_device>& registrar, const exported_memory& exported) {
  auto mapping = gpu::map_host_fd(exported.fd, exported.offset + exported.size);
  if (!mapping) {
    ::close(exported.fd);
    return std::move(mapping).err();
  }
  auto block = std::make_shared<host_block>();
  block->owner = registrar;
  block->mapping = *mapping;
  const bool pinned = exported.kind == memory_kind::host_pinned;
  if (pinned) {
    context_scope scope(*registrar);
    if (auto s = scope.check("cuMemHostRegister"); !s) return std::move(s).err();
    const CUresult rc = registrar->driver->cuMemHostRegister_v2(
        block->mapping.ptr, block->mapping.size, CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP);
    if (rc != CUDA_SUCCESS) {
      return cuda_error(registrar->driver.get(), rc,
                        "cuMemHostRegister(imported fd, " + std::to_string(block->mapping.size) + " bytes)");
    }
    block->registered = true;
  }
  block->kind = exported.kind;
  block->size = exported.size;
  block->host_ptr = static_cast<char*>(block->mapping.ptr) + exported.offset;
  block->device_ptr = reinterpret_cast<std::uintptr_t>(block->host_ptr);
  block->fd = block->mapping.fd;
  return memory_block_ptr(std::move(block));
}

}  // namespace xbuf::cuda_detail
