// SPDX-License-Identifier: MIT
#include "tests/backends/fake_gpu_runtime.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace xbuf::test {

namespace {

using gpu::device_address;
using gpu::device_ref;

constexpr gpu::runtime_caps fake_caps{
    .name = "fake", .title = "FAKE", .vendor = "fake", .linear_not_exportable = "fake linear memory is not exportable"};

void* ptr(device_address a) { return reinterpret_cast<void*>(static_cast<std::uintptr_t>(a)); }
device_address addr(const void* p) { return reinterpret_cast<std::uintptr_t>(p); }

// An event: "done" once recorded and not held.
struct fake_event {
  bool recorded = false;
};

class fake_runtime final : public gpu::gpu_runtime {
 public:
  explicit fake_runtime(std::shared_ptr<fake_gpu_state> s) : gpu_runtime(fake_caps), s_(std::move(s)) {}

  result<int> device_count() const override { return s_->devices; }
  status open_device(device_ref& d) const override {
    d.native = d.ordinal + 100;
    ++s_->open_devices;
    return {};
  }
  void close_device(const device_ref&) const noexcept override { --s_->open_devices; }
  result<gpu::device_props> query_device(const device_ref& d, bool use_vmm) const override {
    gpu::device_props p;
    p.name = "fake" + std::to_string(d.ordinal);
    p.memory_bytes = std::uint64_t{1} << 30;
    p.pci_bus_id = "0000:3B:0" + std::to_string(d.ordinal) + ".0";
    p.unified_addressing = true;
    p.vmm = use_vmm && s_->vmm;
    p.vmm_export_fd = p.vmm;
    return p;
  }
  result<bool> can_access_peer(const device_ref&, const device_ref&) const override { return true; }

  status make_current(const device_ref& d, gpu::current_token& saved) const override {
    if (s_->lost) return fail(errc::device_lost, "fakeSetDevice(" + std::to_string(d.ordinal) + "): lost");
    ++s_->current_depth;
    saved.entered = true;
    return {};
  }
  void restore_current(const device_ref&, const gpu::current_token& saved) const noexcept override {
    if (saved.entered) --s_->current_depth;
  }

  // A stream is a number, not an allocation: a test in which the skeleton
  // rightly skips stream_destroy (a device that cannot be made current)
  // must not leak. live_streams still counts what was not destroyed.
  result<gpu::stream_t> stream_create(const device_ref&) const override {
    ++s_->live_streams;
    static std::atomic<std::uintptr_t> next_stream{1};
    return reinterpret_cast<gpu::stream_t>(next_stream.fetch_add(1));
  }
  void stream_destroy(gpu::stream_t) const noexcept override { --s_->live_streams; }
  void stream_synchronize(gpu::stream_t) const noexcept override { ++s_->synchronizes; }
  status stream_wait_event(const device_ref&, gpu::stream_t, gpu::event_t) const override {
    ++s_->stream_waits;
    return {};
  }
  status memcpy_async(const device_ref&, device_address dst, device_address src, std::size_t bytes,
                      gpu::stream_t) const override {
    std::memcpy(ptr(dst), ptr(src), bytes);
    ++s_->copies;
    return {};
  }
  status memset_async(const device_ref&, device_address dst, std::uint8_t value, std::size_t bytes,
                      gpu::stream_t) const override {
    std::memset(ptr(dst), value, bytes);
    ++s_->fills;
    return {};
  }

  result<gpu::event_t> event_create(const device_ref&) const override { return gpu::event_t{new fake_event}; }
  status event_record(const device_ref&, gpu::event_t e, gpu::stream_t) const override {
    static_cast<fake_event*>(e)->recorded = true;
    return {};
  }
  std::optional<int> event_query(gpu::event_t e) const noexcept override {
    if (s_->hold_events || !static_cast<fake_event*>(e)->recorded) return std::nullopt;
    return 0;
  }
  void event_destroy(gpu::event_t e) const noexcept override { delete static_cast<fake_event*>(e); }

  result<device_address> mem_alloc(const device_ref&, std::size_t bytes) const override {
    void* p = std::aligned_alloc(4096, bytes);
    if (p == nullptr) return fail(errc::out_of_memory, "fakeMalloc");
    return addr(p);
  }
  void mem_free(device_address p) const noexcept override { std::free(ptr(p)); }
  std::optional<gpu::memory_usage> mem_info() const override { return gpu::memory_usage{1024, 2048}; }
  status host_register(void*, std::size_t) const override {
    ++s_->registered_blocks;
    return {};
  }
  void host_unregister(void*) const noexcept override { --s_->registered_blocks; }

  result<std::size_t> vmm_granularity(const device_ref&, bool) const override { return std::size_t{4096}; }
  // Handles are memfd fds + 1 (0 means "none" to the skeleton).
  result<gpu::vmm_handle> vmm_create(const device_ref&, std::size_t bytes, bool) const override {
    const int fd = ::memfd_create("xbuf-fake-vram", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) return fail(errc::out_of_memory, "fakeMemCreate");
    return gpu::vmm_handle(fd + 1);
  }
  void vmm_release(gpu::vmm_handle h) const noexcept override { ::close(static_cast<int>(h) - 1); }
  result<device_address> vmm_reserve(const device_ref&, std::size_t bytes, std::size_t) const override {
    void* p = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return fail(errc::out_of_memory, "fakeMemAddressReserve");
    return addr(p);
  }
  void vmm_free_address(device_address p, std::size_t bytes) const noexcept override { ::munmap(ptr(p), bytes); }
  status vmm_map(const device_ref&, device_address p, std::size_t bytes, gpu::vmm_handle h) const override {
    void* m = ::mmap(ptr(p), bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, static_cast<int>(h) - 1, 0);
    if (m == MAP_FAILED) return fail(errc::io_error, "fakeMemMap");
    return {};
  }
  void vmm_unmap(device_address p, std::size_t bytes) const noexcept override {
    (void)::mmap(ptr(p), bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
  }
  status vmm_set_access(const device_ref&, device_address, std::size_t, std::span<const device_ref>) const override {
    return {};
  }
  result<int> vmm_export_fd(const device_ref&, gpu::vmm_handle h) const override {
    return ::dup(static_cast<int>(h) - 1);
  }
  result<gpu::vmm_handle> vmm_import_fd(const device_ref&, int fd) const override {
    const int own = ::dup(fd);
    if (own < 0) return fail(errc::invalid_argument, "fakeMemImport: bad fd");
    return gpu::vmm_handle(own + 1);
  }

 private:
  std::shared_ptr<fake_gpu_state> s_;
};

}  // namespace

std::shared_ptr<const gpu::gpu_runtime> make_fake_gpu_runtime(std::shared_ptr<fake_gpu_state> state) {
  return std::make_shared<const fake_runtime>(std::move(state));
}

}  // namespace xbuf::test
