// SPDX-License-Identifier: MIT
#include "backends/gpu/gpu_memory.hpp"

#include <unistd.h>

#include <cstdint>
#include <vector>

#include "backends/detail/memfd_block.hpp"
#include "backends/gpu/numa_sysfs.hpp"

namespace xbuf::gpu {

namespace {

std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

std::string title_of(const gpu_device& dev) { return std::string(dev.runtime->caps().title); }

// Adds "device N has F of T bytes free" to an out-of-memory error.
// Precondition: dev is current.
error with_free_memory(const gpu_device& dev, error e) {
  if (e.code != errc::out_of_memory) return e;
  if (auto usage = dev.runtime->mem_info()) {
    e.message += "; device " + std::to_string(dev.index()) + " has " + std::to_string(usage->free_bytes) + " of " +
                 std::to_string(usage->total_bytes) + " bytes free";
  }
  return e;
}

// Reserves, maps and grants access to `size` bytes of block.handle (from
// offset 0) for dev and its peers, filling the block. Unwinds what it did
// on failure. Precondition: dev is current.
status map_handle(const gpu_device& dev, device_block& block, std::size_t size) {
  const gpu_runtime& rt = *dev.runtime;
  auto p = rt.vmm_reserve(dev.ref, size, dev.granularity);
  if (!p) return std::move(p).err();
  if (auto s = rt.vmm_map(dev.ref, *p, size, block.handle); !s) {
    rt.vmm_free_address(*p, size);
    return s;
  }
  std::vector<device_ref> access{dev.ref};
  access.insert(access.end(), dev.peers.begin(), dev.peers.end());
  if (auto s = rt.vmm_set_access(dev.ref, *p, size, access); !s) {
    rt.vmm_unmap(*p, size);
    rt.vmm_free_address(*p, size);
    return s;
  }
  block.base = *p;
  block.mapped = size;
  return {};
}

result<std::shared_ptr<device_block>> allocate_vmm(const std::shared_ptr<gpu_device>& dev, std::size_t size) {
  auto block = std::make_shared<device_block>();
  block->owner = dev;
  block->vmm = true;
  auto h = dev->runtime->vmm_create(dev->ref, size, dev->export_fd);
  if (!h) return with_free_memory(*dev, std::move(h).err());
  block->handle = *h;
  if (auto s = map_handle(*dev, *block, size); !s) return with_free_memory(*dev, std::move(s).err());
  block->exportable = dev->export_fd;
  block->device_ptr = block->base;
  return block;
}

result<std::shared_ptr<device_block>> allocate_linear(const std::shared_ptr<gpu_device>& dev, std::size_t size) {
  auto p = dev->runtime->mem_alloc(dev->ref, size);
  if (!p) return with_free_memory(*dev, std::move(p).err());
  auto block = std::make_shared<device_block>();
  block->owner = dev;
  block->base = *p;
  block->device_ptr = *p;
  return block;
}

// Page-locks the block's whole mapping and arranges that it is unlocked
// before the mapping goes.
status register_host(const std::shared_ptr<gpu_device>& registrar, detail::memfd_block& block) {
  device_scope scope(*registrar);
  if (auto s = scope.check("registering host memory"); !s) return s;
  if (auto s = registrar->runtime->host_register(block.mapping.data(), block.mapping.size()); !s) return s;
  block.on_release = [registrar](const detail::memfd_block& b) {
    device_scope release_scope(*registrar);
    if (release_scope.ok()) registrar->runtime->host_unregister(b.mapping.data());
  };
  return {};
}

}  // namespace

device_block::~device_block() {
  device_scope scope(*owner);
  if (!scope.ok()) return;
  const gpu_runtime& rt = *owner->runtime;
  if (!vmm) {
    if (base != 0) rt.mem_free(base);
    return;
  }
  if (mapped != 0) {
    rt.vmm_unmap(base, mapped);
    rt.vmm_free_address(base, mapped);
  }
  // The physical memory goes when the last mapping and handle are gone,
  // also across processes that imported it.
  if (handle != 0) rt.vmm_release(handle);
}

result<memory_block_ptr> allocate_device(const std::shared_ptr<gpu_device>& dev, std::size_t bytes) {
  device_scope scope(*dev);
  if (auto s = scope.check("allocating device memory"); !s) return std::move(s).err();
  const std::size_t size = round_up(bytes, dev->granularity);
  auto made = dev->vmm ? allocate_vmm(dev, size) : allocate_linear(dev, size);
  if (!made) return std::move(made).err();
  auto block = std::move(made).value();
  block->kind = memory_kind::device;
  block->device = dev->index();
  block->size = size;
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> allocate_host(const std::shared_ptr<gpu_device>& registrar, std::size_t bytes,
                                       bool pinned, int numa_node) {
  if (numa_node >= 0 && !numa_node_exists(numa_node)) {
    return fail(errc::invalid_argument,
                "host memory: NUMA node " + std::to_string(numa_node) + " does not exist on this machine");
  }
  const std::string name =
      "xbuf-" + std::string(registrar->runtime->caps().name) + (pinned ? "-pinned" : "-host");
  auto mapping = detail::memfd_mapping::create(name, bytes);
  if (!mapping) return std::move(mapping).err();
  // Before the first touch, so the pages are born on the node.
  if (numa_node >= 0) {
    if (auto s = mapping->bind_to_node(numa_node); !s) return std::move(s).err().prefixed(name);
  }
  auto block = std::make_shared<detail::memfd_block>();
  block->mapping = std::move(mapping).value();
  block->owner = registrar;
  if (pinned) {
    if (auto s = register_host(registrar, *block); !s) return std::move(s).err();
  }
  block->kind = pinned ? memory_kind::host_pinned : memory_kind::host_pageable;
  block->device = -1;
  block->size = bytes;
  block->host_ptr = block->mapping.data();
  block->device_ptr = reinterpret_cast<std::uintptr_t>(block->host_ptr);
  block->fd = block->mapping.fd();
  block->numa_node = block->mapping.numa_node();
  return memory_block_ptr(std::move(block));
}

result<exported_memory> export_device(const device_block& block, const memory_span& span) {
  const gpu_device& dev = *block.owner;
  if (!block.vmm) return fail(errc::unsupported, std::string(dev.runtime->caps().linear_not_exportable));
  if (!block.exportable) {
    return fail(errc::unsupported, title_of(dev) + " device " + std::to_string(block.device) +
                                       ": memory was not created with the POSIX-fd handle type "
                                       "(the device or driver does not support it)");
  }
  device_scope scope(dev);
  if (auto s = scope.check("exporting memory"); !s) return std::move(s).err();
  auto fd = dev.runtime->vmm_export_fd(dev.ref, block.handle);
  if (!fd) {
    auto e = std::move(fd).err();
    if (e.code != errc::out_of_memory && e.code != errc::unsupported) e.code = errc::io_error;
    return e;
  }
  // Imports map from offset 0 of the handle, so the offset is relative to
  // the allocation, which for an imported block starts before device_ptr.
  const auto base_offset = static_cast<std::size_t>(block.device_ptr - block.base);
  return exported_memory{*fd, base_offset + span.offset, span.size, memory_kind::device};
}

result<memory_block_ptr> import_device(const std::shared_ptr<gpu_device>& dev, const exported_memory& exported) {
  const int fd = exported.fd;
  if (!dev->export_fd) {
    ::close(fd);
    return fail(errc::unsupported, title_of(*dev) + " device " + std::to_string(dev->index()) +
                                       " cannot import POSIX-fd memory handles");
  }
  device_scope scope(*dev);
  if (auto s = scope.check("importing memory"); !s) {
    ::close(fd);
    return std::move(s).err();
  }
  auto h = dev->runtime->vmm_import_fd(dev->ref, fd);
  ::close(fd);  // the handle keeps the memory; the fd is ours to close either way
  if (!h) {
    auto e = std::move(h).err();
    if (e.code == errc::io_error || e.code == errc::not_found) e.code = errc::invalid_argument;
    return e;
  }
  auto block = std::make_shared<device_block>();
  block->owner = dev;
  block->vmm = true;
  block->handle = *h;
  // vmm_map maps from offset 0 of the handle; mapping up to the end of the
  // exported range (rounded to the granularity) stays inside the
  // allocation, whose size is a multiple of it.
  const std::size_t size = round_up(exported.offset + exported.size, dev->granularity);
  if (auto s = map_handle(*dev, *block, size); !s) return std::move(s).err();
  block->kind = memory_kind::device;
  block->device = dev->index();
  block->size = exported.size;
  block->device_ptr = block->base + exported.offset;
  return memory_block_ptr(std::move(block));
}

result<memory_block_ptr> import_host(const std::shared_ptr<gpu_device>& registrar, const exported_memory& exported) {
  auto imported = detail::import_block(exported, -1, title_of(*registrar) + " backend");
  if (!imported) return std::move(imported).err();
  auto block = std::move(imported).value();
  block->owner = registrar;
  if (exported.kind == memory_kind::host_pinned) {
    if (auto s = register_host(registrar, *block); !s) return std::move(s).err();
  }
  block->device_ptr = reinterpret_cast<std::uintptr_t>(block->host_ptr);
  return memory_block_ptr(std::move(block));
}

}  // namespace xbuf::gpu
