// SPDX-License-Identifier: MIT
#include "backends/hip/hip_prims.hpp"

#include <cstdint>
#include <vector>

namespace xbuf {

namespace {

using gpu::device_address;
using gpu::device_ref;
using gpu::on_device;

constexpr gpu::runtime_caps hip_caps{
    .name = "hip",
    .title = "HIP",
    .vendor = "amd",
    .linear_not_exportable = "HIP device memory from hipMalloc cannot be exported by fd (its IPC handle "
                             "is not a file descriptor; hipMemCreate needs a HIP >= 6 runtime and VMM support)",
};

// HIP passes addresses and VMM handles as pointers; the skeleton keeps
// them as integers.
void* ptr(device_address a) noexcept { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(a)); }
device_address addr(const void* p) noexcept { return reinterpret_cast<std::uintptr_t>(p); }
hip_vmm_abi::handle vmm(gpu::vmm_handle h) noexcept { return reinterpret_cast<hip_vmm_abi::handle>(h); }
hipStream_t stream(gpu::stream_t s) noexcept { return static_cast<hipStream_t>(s); }
hipEvent_t event(gpu::event_t e) noexcept { return static_cast<hipEvent_t>(e); }
std::string ordinal(const device_ref& d) { return std::to_string(d.ordinal); }

hip_vmm_abi::allocation_prop pinned_on(const device_ref& d) noexcept {
  hip_vmm_abi::allocation_prop prop{};
  prop.type = hip_vmm_abi::allocation_pinned;
  // Always the POSIX-fd type: every VMM device of a HIP >= 6 runtime has it.
  prop.requested_handle_type = hip_vmm_abi::handle_posix_fd;
  prop.location.type = hip_vmm_abi::location_device;
  prop.location.id = d.ordinal;
  return prop;
}

class hip_prims final : public gpu::gpu_runtime {
 public:
  explicit hip_prims(std::shared_ptr<const hip_runtime> runtime)
      : gpu_runtime(hip_caps), rt_(std::move(runtime)), chk_(*rt_) {}

  result<int> device_count() const override;
  // Nothing to open or retain: HIP devices are ordinals.
  status open_device(device_ref& d) const override {
    d.native = d.ordinal;
    return {};
  }
  void close_device(const device_ref&) const noexcept override {}
  result<gpu::device_props> query_device(const device_ref& d, bool use_vmm) const override;
  result<bool> can_access_peer(const device_ref& d, const device_ref& peer) const override {
    int can = 0;
    auto s = chk_.hipDeviceCanAccessPeer(ordinal(d) + " -> " + ordinal(peer), &can, d.ordinal, peer.ordinal);
    if (!s) return std::move(s).err();
    return can != 0;
  }

  status make_current(const device_ref& d, gpu::current_token& saved) const override {
    if (!chk_.hipGetDevice("", &saved.previous)) saved.previous = -1;
    if (saved.previous != d.ordinal) {
      if (auto s = chk_.hipSetDevice(ordinal(d), d.ordinal); !s) return s;
    }
    saved.entered = true;
    return {};
  }
  void restore_current(const device_ref& d, const gpu::current_token& saved) const noexcept override {
    if (saved.entered && saved.previous >= 0 && saved.previous != d.ordinal) (void)rt_->hipSetDevice(saved.previous);
  }

  result<gpu::stream_t> stream_create(const device_ref& d) const override;
  void stream_destroy(gpu::stream_t s) const noexcept override { (void)rt_->hipStreamDestroy(stream(s)); }
  void stream_synchronize(gpu::stream_t s) const noexcept override { (void)rt_->hipStreamSynchronize(stream(s)); }
  status stream_wait_event(const device_ref& d, gpu::stream_t s, gpu::event_t e) const override {
    return chk_.hipStreamWaitEvent("device " + ordinal(d), stream(s), event(e), 0U);
  }
  status memcpy_async(const device_ref& d, device_address dst, device_address src, std::size_t bytes,
                      gpu::stream_t s) const override {
    return chk_.hipMemcpyAsync(std::to_string(bytes) + " bytes, stream of device " + ordinal(d), ptr(dst),
                               static_cast<const void*>(ptr(src)), bytes, hipMemcpyDefault, stream(s));
  }
  status memset_async(const device_ref& d, device_address dst, std::uint8_t value, std::size_t bytes,
                      gpu::stream_t s) const override {
    return chk_.hipMemsetAsync(std::to_string(bytes) + " bytes, stream of device " + ordinal(d), ptr(dst),
                               static_cast<int>(value), bytes, stream(s));
  }

  result<gpu::event_t> event_create(const device_ref& d) const override;
  status event_record(const device_ref& d, gpu::event_t e, gpu::stream_t s) const override {
    return chk_.hipEventRecord("device " + ordinal(d), event(e), stream(s));
  }
  std::optional<int> event_query(gpu::event_t e) const noexcept override {
    // A three-way answer, not an error check: hipErrorNotReady means running.
    const hipError_t rc = rt_->hipEventQuery(event(e));
    if (rc == hipErrorNotReady) return std::nullopt;
    return hip_codes.fence_errno_of(rc);
  }
  void event_destroy(gpu::event_t e) const noexcept override { (void)rt_->hipEventDestroy(event(e)); }

  result<device_address> mem_alloc(const device_ref& d, std::size_t bytes) const override;
  void mem_free(device_address p) const noexcept override { (void)rt_->hipFree(ptr(p)); }
  std::optional<gpu::memory_usage> mem_info() const override {
    gpu::memory_usage u;
    if (!chk_.hipMemGetInfo("", &u.free_bytes, &u.total_bytes)) return std::nullopt;
    return u;
  }
  status host_register(void* p, std::size_t bytes) const override {
    return chk_.hipHostRegister(std::to_string(bytes) + " bytes, portable", p, bytes,
                                unsigned{hipHostRegisterPortable | hipHostRegisterMapped});
  }
  void host_unregister(void* p) const noexcept override { (void)rt_->hipHostUnregister(p); }

  result<std::size_t> vmm_granularity(const device_ref& d, bool export_fd) const override;
  result<gpu::vmm_handle> vmm_create(const device_ref& d, std::size_t bytes, bool export_fd) const override;
  void vmm_release(gpu::vmm_handle h) const noexcept override { (void)rt_->hipMemRelease(vmm(h)); }
  result<device_address> vmm_reserve(const device_ref& d, std::size_t bytes, std::size_t alignment) const override;
  void vmm_free_address(device_address p, std::size_t bytes) const noexcept override {
    (void)rt_->hipMemAddressFree(ptr(p), bytes);
  }
  status vmm_map(const device_ref& d, device_address p, std::size_t bytes, gpu::vmm_handle h) const override {
    return chk_.hipMemMap(on_device(d, bytes), ptr(p), bytes, std::size_t{0}, vmm(h), 0ULL);
  }
  void vmm_unmap(device_address p, std::size_t bytes) const noexcept override { (void)rt_->hipMemUnmap(ptr(p), bytes); }
  status vmm_set_access(const device_ref& d, device_address p, std::size_t bytes,
                        std::span<const device_ref> devices) const override;
  result<int> vmm_export_fd(const device_ref& d, gpu::vmm_handle h) const override;
  result<gpu::vmm_handle> vmm_import_fd(const device_ref& d, int fd) const override;

 private:
  std::shared_ptr<const hip_runtime> rt_;
  hip_checked chk_;
};

// ROCm reports "no GPU" here, as hipErrorNoDevice (or an init error when
// the kernel driver is absent).
result<int> hip_prims::device_count() const {
  int n = 0;
  if (auto s = chk_.hipGetDeviceCount("", &n); !s) return std::move(s).err();
  return n;
}

result<gpu::device_props> hip_prims::query_device(const device_ref& d, bool use_vmm) const {
  const std::string which = "device " + ordinal(d);
  gpu::device_props p;
  char name[256] = {};
  if (auto s = chk_.hipDeviceGetName(which, name, int{sizeof name - 1}, d.ordinal); !s) return std::move(s).err();
  p.name = name;
  if (auto s = chk_.hipDeviceTotalMem(which, &p.memory_bytes, d.ordinal); !s) return std::move(s).err();
  char bus[32] = {};
  if (chk_.hipDeviceGetPCIBusId(which, bus, int{sizeof bus - 1}, d.ordinal)) p.pci_bus_id = bus;
  // Every ROCm GPU addresses host and device memory in one space, which
  // hipMemcpyDefault relies on; HIP's attribute for it moved between
  // releases, so it is not asked.
  p.unified_addressing = true;
  int vmm_supported = 0;
  p.vmm = use_vmm && rt_->has_vmm() &&
          chk_.hipDeviceGetAttribute(which, &vmm_supported, hip_vmm_abi::attribute_vmm_supported, d.ordinal) &&
          vmm_supported == 1;
  p.vmm_export_fd = p.vmm;
  return p;
}

result<gpu::stream_t> hip_prims::stream_create(const device_ref& d) const {
  hipStream_t s = nullptr;
  if (auto st = chk_.hipStreamCreateWithFlags("device " + ordinal(d) + ", non-blocking", &s,
                                              unsigned{hipStreamNonBlocking});
      !st) {
    return std::move(st).err();
  }
  return gpu::stream_t{s};
}

result<gpu::event_t> hip_prims::event_create(const device_ref& d) const {
  hipEvent_t e = nullptr;
  auto s = chk_.hipEventCreateWithFlags("device " + ordinal(d), &e, unsigned{hipEventDisableTiming});
  if (!s) return std::move(s).err();
  return gpu::event_t{e};
}

result<device_address> hip_prims::mem_alloc(const device_ref& d, std::size_t bytes) const {
  void* p = nullptr;
  if (auto s = chk_.hipMalloc(on_device(d, bytes), &p, bytes); !s) return std::move(s).err();
  return addr(p);
}

// HIP's VMM devices always carry the POSIX-fd type (export_fd == vmm), so
// the flag changes nothing here.
result<std::size_t> hip_prims::vmm_granularity(const device_ref& d, bool) const {
  const auto prop = pinned_on(d);
  std::size_t g = 0;
  auto s = chk_.hipMemGetAllocationGranularity("device " + ordinal(d), &g, &prop, hip_vmm_abi::granularity_minimum);
  if (!s) return std::move(s).err();
  return g;
}

result<gpu::vmm_handle> hip_prims::vmm_create(const device_ref& d, std::size_t bytes, bool) const {
  const auto prop = pinned_on(d);
  hip_vmm_abi::handle h = nullptr;
  if (auto s = chk_.hipMemCreate(on_device(d, bytes), &h, bytes, &prop, 0ULL); !s) return std::move(s).err();
  return gpu::vmm_handle{addr(h)};
}

result<device_address> hip_prims::vmm_reserve(const device_ref& d, std::size_t bytes, std::size_t alignment) const {
  void* p = nullptr;
  auto s = chk_.hipMemAddressReserve(on_device(d, bytes), &p, bytes, alignment, static_cast<void*>(nullptr), 0ULL);
  if (!s) return std::move(s).err();
  return addr(p);
}

status hip_prims::vmm_set_access(const device_ref& d, device_address p, std::size_t bytes,
                                 std::span<const device_ref> devices) const {
  std::vector<hip_vmm_abi::access_desc> access(devices.size());
  for (std::size_t i = 0; i < devices.size(); ++i) {
    access[i].location = {hip_vmm_abi::location_device, devices[i].ordinal};
    access[i].flags = hip_vmm_abi::access_read_write;
  }
  return chk_.hipMemSetAccess(on_device(d, bytes), ptr(p), bytes, access.data(), access.size());
}

result<int> hip_prims::vmm_export_fd(const device_ref& d, gpu::vmm_handle h) const {
  int fd = -1;
  auto s = chk_.hipMemExportToShareableHandle("device " + ordinal(d), static_cast<void*>(&fd), vmm(h),
                                              hip_vmm_abi::handle_posix_fd, 0ULL);
  if (!s) return std::move(s).err();
  return fd;
}

result<gpu::vmm_handle> hip_prims::vmm_import_fd(const device_ref& d, int fd) const {
  hip_vmm_abi::handle h = nullptr;
  // The "OS handle" of a POSIX fd is the fd itself, cast to a pointer.
  auto s = chk_.hipMemImportFromShareableHandle("fd " + std::to_string(fd) + ", device " + ordinal(d), &h,
                                                reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)),
                                                hip_vmm_abi::handle_posix_fd);
  if (!s) return std::move(s).err();
  return gpu::vmm_handle{addr(h)};
}

}  // namespace

result<std::shared_ptr<const gpu::gpu_runtime>> load_hip_runtime(const std::vector<std::string>& libraries) {
  auto loaded = hip_runtime::load(libraries);
  if (!loaded) return std::move(loaded).err();
  return std::shared_ptr<const gpu::gpu_runtime>(std::make_shared<const hip_prims>(std::move(loaded).value()));
}

}  // namespace xbuf
