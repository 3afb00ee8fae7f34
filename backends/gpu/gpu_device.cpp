// SPDX-License-Identifier: MIT
#include "backends/gpu/gpu_device.hpp"

#include "backends/gpu/numa_sysfs.hpp"
#include "core/fence.hpp"
#include "core/pci_address.hpp"

namespace xbuf::gpu {

gpu_device::~gpu_device() {
  if (runtime == nullptr || !opened) return;
  if (stream != nullptr) {
    device_scope scope(*this);
    if (scope.ok()) {
      // Work still queued (a block freed right after its last copy) must not
      // run against a destroyed stream; errors no longer matter here.
      runtime->stream_synchronize(stream);
      runtime->stream_destroy(stream);
    }
  }
  runtime->close_device(ref);
}

device_scope::device_scope(const gpu_device& dev) : dev_(dev), entered_(dev.runtime->make_current(dev.ref, saved_)) {}

device_scope::~device_scope() { dev_.runtime->restore_current(dev_.ref, saved_); }

status device_scope::check(std::string_view what) const {
  if (ok()) return {};
  return entered_.err().prefixed(std::string(dev_.runtime->caps().title) + " device " +
                                 std::to_string(dev_.index()) + " for " + std::string(what));
}

namespace {

device_info describe(const runtime_caps& caps, device_props& props) {
  device_info info;
  info.vendor = std::string(caps.vendor);
  info.name = std::move(props.name);
  info.memory_bytes = props.memory_bytes;
  info.pci_address = normalize_pci_address(props.pci_bus_id).value_or("");
  // The runtime's answer first (CUDA 12.2+ knows it); sysfs knows it for
  // every PCI device.
  info.numa_node = props.numa_node;
  if (info.numa_node < 0 && !info.pci_address.empty()) info.numa_node = numa_node_of_pci_device(info.pci_address);
  return info;
}

// VMM where the device has it and its granularity is known; otherwise the
// device stays on linear memory, which works everywhere but cannot be
// exported by fd.
void probe_vmm(gpu_device& dev, const device_props& props) {
  if (!props.vmm) return;
  auto gran = dev.runtime->vmm_granularity(dev.ref, props.vmm_export_fd);
  if (!gran || *gran == 0) return;
  dev.vmm = true;
  dev.export_fd = props.vmm_export_fd;
  dev.granularity = *gran;
}

}  // namespace

result<opened_device> open_device(std::shared_ptr<const gpu_runtime> runtime, int ordinal, bool use_vmm) {
  auto dev = std::make_shared<gpu_device>();
  dev->runtime = std::move(runtime);
  dev->ref.ordinal = ordinal;
  const gpu_runtime& rt = *dev->runtime;
  if (auto s = rt.open_device(dev->ref); !s) return std::move(s).err();
  dev->opened = true;  // from here on the destructor closes it

  auto props = rt.query_device(dev->ref, use_vmm);
  if (!props) return std::move(props).err();
  device_info info = describe(rt.caps(), *props);
  if (!props->unified_addressing) {
    return fail(errc::unsupported, std::string(rt.caps().title) + " device " + std::to_string(ordinal) + " (" +
                                       info.name + ") has no unified addressing, which the " +
                                       std::string(rt.caps().title) + " backend requires");
  }
  device_scope scope(*dev);
  if (auto s = scope.check("opening the device"); !s) return std::move(s).err();
  auto stream = rt.stream_create(dev->ref);
  if (!stream) return std::move(stream).err();
  dev->stream = *stream;
  probe_vmm(*dev, *props);
  dev->fence_context = fence::allocate_context();
  return opened_device{std::move(dev), std::move(info)};
}

}  // namespace xbuf::gpu
