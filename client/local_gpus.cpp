// SPDX-License-Identifier: MIT
#include "client/local_gpus.hpp"

#include "backends/select.hpp"

namespace xbuf::client::detail {

result<std::shared_ptr<gpu::gpu_device>> local_gpus::for_backend(std::string_view backend, int index) {
  if (backend == "sim" || backend == "host") return std::shared_ptr<gpu::gpu_device>{};
  if (index < 0) {
    return fail(errc::invalid_argument, "VRAM of " + std::string(backend) + " device " + std::to_string(index) +
                                            ": no such device (the CPU cannot map GPU memory)");
  }
  xbuf::mutex_lock lock(mutex_);
  if (auto it = devices_.find(index); it != devices_.end()) return it->second;
  if (!runtime_) {
    if (load_failed_) return *load_failed_;
    auto choice = parse_backend_choice(backend);
    auto rt = choice ? load_gpu_runtime(*choice) : result<std::shared_ptr<const gpu::gpu_runtime>>(choice.err());
    if (!rt) {
      load_failed_ = std::move(rt).err().prefixed("mapping " + std::string(backend) + " VRAM in this process");
      return *load_failed_;
    }
    runtime_ = std::move(*rt);
  }
  auto opened = gpu::open_device(runtime_, index, true);
  if (!opened) return std::move(opened).err().prefixed("mapping VRAM of device " + std::to_string(index));
  devices_[index] = opened->device;
  return opened->device;
}

}  // namespace xbuf::client::detail
