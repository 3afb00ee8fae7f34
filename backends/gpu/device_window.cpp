// SPDX-License-Identifier: MIT
#include "backends/gpu/device_window.hpp"

#include <unistd.h>

#include <string>
#include <utility>
#include <vector>

namespace xbuf::gpu {

namespace {

std::size_t round_up(std::size_t v, std::size_t to) { return (v + to - 1) / to * to; }

std::string device_name(const gpu_device& dev) {
  return std::string(dev.runtime->caps().title) + " device " + std::to_string(dev.index());
}

// The allocation behind an fd of device memory; the fd is closed either way.
result<vmm_handle> import_handle(const gpu_device& dev, const exported_memory& e) {
  const int fd = e.fd;
  if (e.kind != memory_kind::device) {
    if (fd >= 0) ::close(fd);
    return fail(errc::unsupported, "device window: the export is " + std::string(to_string(e.kind)) +
                                       " memory, not VRAM (map host memory with file_view)");
  }
  if (!dev.vmm || !dev.export_fd) {
    if (fd >= 0) ::close(fd);
    return fail(errc::unsupported, device_name(dev) + " cannot import POSIX-fd memory handles (no VMM support)");
  }
  auto h = dev.runtime->vmm_import_fd(dev.ref, fd);
  if (fd >= 0) ::close(fd);  // the handle keeps the memory
  if (!h) {
    auto err = std::move(h).err();
    if (err.code == errc::io_error || err.code == errc::not_found) err.code = errc::invalid_argument;
    return err.prefixed("device window");
  }
  return h;
}

// Maps `bytes` of h at p with read-write access for dev.
status map_at(const gpu_device& dev, device_address p, std::size_t bytes, vmm_handle h) {
  if (auto s = dev.runtime->vmm_map(dev.ref, p, bytes, h); !s) return s;
  const std::vector<device_ref> access{dev.ref};
  if (auto s = dev.runtime->vmm_set_access(dev.ref, p, bytes, access); !s) {
    dev.runtime->vmm_unmap(p, bytes);
    return s;
  }
  return ok();
}

}  // namespace

result<std::unique_ptr<device_window>> device_window::open(std::shared_ptr<gpu_device> dev,
                                                           const exported_memory& exported) {
  if (!dev) {
    if (exported.fd >= 0) ::close(exported.fd);
    return fail(errc::invalid_argument, "device window: no device");
  }
  device_scope scope(*dev);
  if (auto s = scope.check("mapping imported memory"); !s) {
    if (exported.fd >= 0) ::close(exported.fd);
    return std::move(s).err();
  }
  auto h = import_handle(*dev, exported);
  if (!h) return std::move(h).err();
  const std::size_t bytes = round_up(exported.offset + exported.size, dev->granularity);
  auto base = dev->runtime->vmm_reserve(dev->ref, bytes, dev->granularity);
  if (!base) {
    dev->runtime->vmm_release(*h);
    return std::move(base).err();
  }
  std::unique_ptr<device_window> w(new device_window(dev, *base, bytes, exported.offset));
  if (auto s = map_at(*dev, *base, bytes, *h); !s) {
    dev->runtime->vmm_release(*h);
    return std::move(s).err();  // the destructor frees the range
  }
  w->handle_ = *h;
  w->mapped_bytes_ = bytes;
  w->mapped_ = true;
  return w;
}

status device_window::show(const exported_memory& exported) {
  device_scope scope(*dev_);
  if (auto s = scope.check("remapping imported memory"); !s) {
    if (exported.fd >= 0) ::close(exported.fd);
    return s;
  }
  const std::size_t needed = round_up(exported.offset + exported.size, dev_->granularity);
  if (needed > bytes_ || exported.offset != offset_) {
    if (exported.fd >= 0) ::close(exported.fd);
    return fail(errc::invalid_argument,
                "device window: the new allocation (" + std::to_string(exported.size) + " bytes at offset " +
                    std::to_string(exported.offset) + ") does not fit the " + std::to_string(bytes_) +
                    "-byte range reserved at offset " + std::to_string(offset_) + ": map it again");
  }
  auto h = import_handle(*dev_, exported);
  if (!h) return std::move(h).err();
  hide();
  // Only what the new allocation holds: a map may not run past its end.
  if (auto s = map_at(*dev_, base_, needed, *h); !s) {
    dev_->runtime->vmm_release(*h);
    return s;
  }
  handle_ = *h;
  mapped_bytes_ = needed;
  mapped_ = true;
  return ok();
}

void device_window::clear() noexcept {
  device_scope scope(*dev_);
  if (scope.ok()) hide();
}

void device_window::hide() noexcept {
  if (!mapped_) return;
  dev_->runtime->vmm_unmap(base_, mapped_bytes_);
  dev_->runtime->vmm_release(handle_);
  mapped_ = false;
}

device_window::~device_window() {
  device_scope scope(*dev_);
  if (!scope.ok()) return;  // the driver is gone: so is the address space
  hide();
  dev_->runtime->vmm_free_address(base_, bytes_);
}

}  // namespace xbuf::gpu
