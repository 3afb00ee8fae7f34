// SPDX-License-Identifier: MIT
#include "backends/sim/sim_backend.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cmath>
#include <mutex>
#include <set>
#include <utility>

#include "backends/detail/copy_engine.hpp"
#include "backends/detail/memfd_block.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf {

namespace detail {

// VRAM accounting shared by the backend and its device blocks, so blocks may
// outlive the backend. Invariant per device: used == sum of live blocks'
// charged_bytes <= capacity.
struct sim_state {
  struct device {
    std::string name;
    std::size_t capacity = 0;
    std::size_t used = 0;
    std::uint64_t live_blocks = 0;
    bool lost = false;
  };
  mutable xbuf::mutex mutex;  // leaf
  // Size, names and capacities fixed at creation; the rest changes under mutex.
  std::vector<device> devices XBUF_GUARDED_BY(mutex);
  // How many devices are lost now (written under mutex): copies and fills
  // look at `lost` under the lock only when some device is, so a small
  // copy costs no lock here.
  std::atomic<unsigned> lost_devices{0};
  // Unmaps dropped device blocks off the thread that dropped them.
  const std::shared_ptr<mapping_reclaimer> reclaimer = std::make_shared<mapping_reclaimer>();
};

}  // namespace detail

sim_config make_sim_config(int devices, std::size_t vram_bytes) {
  sim_config c;
  for (int i = 0; i < devices; ++i) {
    c.devices.push_back({.name = "sim" + std::to_string(i), .pci_address = "", .numa_node = -1,
                         .vram_bytes = vram_bytes});
  }
  return c;
}

sim_backend::sim_backend(backend_caps caps, std::vector<device_info> devices,
                         std::shared_ptr<detail::sim_state> state,
                         std::vector<std::unique_ptr<detail::copy_engine>> engines,
                         std::unique_ptr<host_backend> host, std::vector<int> numa_nodes)
    : backend(caps, std::move(devices)),
      state_(std::move(state)),
      host_(std::move(host)),
      engines_(std::move(engines)),
      numa_nodes_(std::move(numa_nodes)) {}

// Engines first: they cancel unfinished copies, whose blocks may be host blocks.
sim_backend::~sim_backend() {
  engines_.clear();
  host_.reset();
}

result<std::unique_ptr<sim_backend>> create_sim_backend(const sim_config& config) {
  if (config.devices.empty()) {
    return fail(errc::no_device, "sim: the configuration lists no devices");
  }
  if (!std::isfinite(config.copy_bytes_per_second) || config.copy_bytes_per_second < 0) {
    return fail(errc::invalid_argument, "sim: copy_bytes_per_second " +
                                            std::to_string(config.copy_bytes_per_second) +
                                            " is not a rate (use 0 for memcpy speed)");
  }
  std::vector<int> nodes = config.numa_nodes;
  std::sort(nodes.begin(), nodes.end());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i] < 0 || (i > 0 && nodes[i] == nodes[i - 1])) {
      return fail(errc::invalid_argument, "sim: NUMA node " + std::to_string(nodes[i]) +
                                              (nodes[i] < 0 ? " is negative" : " is listed twice"));
    }
  }
  for (const auto& d : config.devices) {
    if (!nodes.empty() && d.numa_node >= 0 && !std::binary_search(nodes.begin(), nodes.end(), d.numa_node)) {
      return fail(errc::invalid_argument, "sim: device " + d.name + " is on NUMA node " +
                                              std::to_string(d.numa_node) + ", which numa_nodes does not list");
    }
  }
  auto state = std::make_shared<detail::sim_state>();
  std::vector<device_info> infos;
  std::set<std::string> names;
  for (std::size_t i = 0; i < config.devices.size(); ++i) {
    const auto& d = config.devices[i];
    std::string name = d.name.empty() ? "sim" + std::to_string(i) : d.name;
    if (d.vram_bytes == 0) {
      return fail(errc::invalid_argument, "sim: device " + name + " has 0 bytes of VRAM");
    }
    if (!names.insert(name).second) {
      return fail(errc::invalid_argument, "sim: device name " + name + " is used twice");
    }
    device_info info;
    info.name = name;
    info.vendor = "sim";
    info.pci_address = d.pci_address;
    std::transform(info.pci_address.begin(), info.pci_address.end(), info.pci_address.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    info.numa_node = d.numa_node;
    info.memory_bytes = d.vram_bytes;
    infos.push_back(std::move(info));
    mutex_lock lock(state->mutex);  // not shared yet; taken for the analysis
    state->devices.push_back({.name = name, .capacity = d.vram_bytes, .used = 0, .live_blocks = 0, .lost = false});
  }

  std::vector<std::unique_ptr<detail::copy_engine>> engines;
  for (const auto& info : infos) {
    auto e = detail::copy_engine::create({.name = info.name + " copy engine",
                                          .driver_name = "sim-copy",
                                          .bytes_per_second = config.copy_bytes_per_second,
                                          .inline_max_bytes = detail::inline_copy_max});
    if (!e) return std::move(e).err().prefixed("sim");
    engines.push_back(std::move(e).value());
  }
  auto host = create_host_backend(config.host);
  if (!host) return std::move(host).err().prefixed("sim");

  backend_caps caps;
  caps.export_fd = true;
  caps.host_mapped_device = true;
  caps.pinned_host = true;
  caps.peer_query = false;
  caps.fill = true;
  caps.export_detaches_ranges = true;
  caps.export_detaches_pinned_ranges = true;  // host memory is the host backend's
  caps.export_detaches_pageable_ranges = true;
  caps.device_granularity = detail::page_size();
  return std::unique_ptr<sim_backend>(new sim_backend(caps, std::move(infos), std::move(state),
                                                      std::move(engines), std::move(host).value(),
                                                      std::move(nodes)));
}

status sim_backend::check_fault_device(std::string_view what, int device) const {
  if (device < 0 || static_cast<std::size_t>(device) >= engines_.size()) {
    return fail(errc::no_device, "sim: " + std::string(what) + ": device " + std::to_string(device) +
                                     " does not exist (" + std::to_string(engines_.size()) + " devices)");
  }
  return ok();
}

status sim_backend::fail_next_copies(int device, unsigned count) {
  if (auto s = check_fault_device("fail_next_copies", device); !s) return s;
  engines_[static_cast<std::size_t>(device)]->fail_next(count);
  return ok();
}

status sim_backend::set_fence_delay(int device, fence_clock::duration extra) {
  if (auto s = check_fault_device("set_fence_delay", device); !s) return s;
  engines_[static_cast<std::size_t>(device)]->set_extra_latency(extra);
  return ok();
}

status sim_backend::reset_device(int device, sim_reset_mode mode) {
  if (auto s = check_fault_device("reset_device", device); !s) return s;
  {
    // Marked lost before the engine fails its copies, so no new work slips in
    // between (copies check `lost` before they are submitted).
    mutex_lock lock(state_->mutex);
    auto& d = state_->devices[static_cast<std::size_t>(device)];
    const bool lose = mode == sim_reset_mode::lose;
    if (d.lost != lose) {
      if (lose) {
        state_->lost_devices.fetch_add(1);
      } else {
        state_->lost_devices.fetch_sub(1);
      }
    }
    d.lost = lose;
  }
  engines_[static_cast<std::size_t>(device)]->reset(-EIO);
  return ok();
}

result<sim_device_stats> sim_backend::device_stats(int device) const {
  if (auto s = check_fault_device("device_stats", device); !s) return s.err();
  const auto i = static_cast<std::size_t>(device);
  sim_device_stats out;
  {
    mutex_lock lock(state_->mutex);
    const auto& d = state_->devices[i];
    out.vram_bytes = d.capacity;
    out.used_bytes = d.used;
    out.live_blocks = d.live_blocks;
    out.lost = d.lost;
  }
  const auto e = engines_[i]->stats();
  out.copies_completed = e.completed;
  out.copies_failed = e.failed;
  out.bytes_copied = e.bytes_copied;
  return out;
}

result<memory_block_ptr> sim_backend::do_allocate_device(int device, std::size_t bytes) {
  const auto i = static_cast<std::size_t>(device);
  const std::size_t page = detail::page_size();
  auto state = state_;
  const std::string& name = devices()[i].name;
  std::size_t charged = 0;
  {
    mutex_lock lock(state->mutex);
    auto& d = state->devices[i];
    if (d.lost) {
      return fail(errc::device_lost, "sim: allocate_device: device " + name + " is lost (reset with sim_reset_mode::lose)");
    }
    const std::size_t free_bytes = d.capacity - d.used;
    if (bytes > free_bytes || (bytes + page - 1) / page * page > free_bytes) {
      return fail(errc::out_of_memory,
                  "sim: allocate_device: device " + name + " cannot fit " + std::to_string(bytes) +
                      " bytes: " + std::to_string(d.used) + " of " + std::to_string(d.capacity) +
                      " bytes in use in " + std::to_string(d.live_blocks) + " blocks, " +
                      std::to_string(free_bytes) + " free");
    }
    charged = (bytes + page - 1) / page * page;
    d.used += charged;
    ++d.live_blocks;
  }
  auto block = std::make_shared<detail::memfd_block>();
  block->charged_bytes = charged;
  block->on_release = [state, i](const detail::memfd_block& b) {
    mutex_lock lock(state->mutex);
    state->devices[i].used -= b.charged_bytes;
    --state->devices[i].live_blocks;
  };
  block->owner = state;
  block->reclaimer = state->reclaimer;
  auto mapping = detail::memfd_mapping::create("xbuf-" + name + "-vram", charged);
  if (!mapping) return std::move(mapping).err().prefixed("sim: allocate_device: device " + name);
  block->mapping = std::move(mapping).value();
  block->kind = memory_kind::device;
  block->device = device;
  block->size = charged;  // device allocations are multiples of caps().device_granularity
  block->host_ptr = block->mapping.data();
  block->device_ptr = reinterpret_cast<std::uint64_t>(block->host_ptr);
  block->fd = block->mapping.fd();
  block->numa_node = -1;
  return memory_block_ptr(std::move(block));
}

std::vector<int> sim_backend::do_host_numa_nodes() const {
  if (!numa_nodes_.empty()) return numa_nodes_;
  return host_->numa_nodes();
}

result<memory_block_ptr> sim_backend::do_allocate_host(std::size_t bytes, bool pinned, int numa_node) {
  if (!numa_nodes_.empty() && numa_node >= 0) {
    // A simulated node: checked against the simulated machine, not bound
    // (this machine may not have it).
    if (std::find(numa_nodes_.begin(), numa_nodes_.end(), numa_node) == numa_nodes_.end()) {
      std::string list;
      for (int n : numa_nodes_) list += (list.empty() ? "" : ", ") + std::to_string(n);
      return fail(errc::invalid_argument, "sim: allocate_host: NUMA node " + std::to_string(numa_node) +
                                              " is not one of the simulated machine's (" + list + ")");
    }
    numa_node = -1;
  }
  auto b = host_->allocate_host(bytes, pinned, numa_node);
  if (!b) return std::move(b).err().prefixed("sim");
  return b;
}

result<fence_ptr> sim_backend::do_copy(const memory_span& dst, const memory_span& src,
                                       std::span<const fence_ptr> wait_for) {
  // Which device each operand lives on (-1: internal host memory).
  int dev[2] = {-1, -1};
  const memory_span* spans[2] = {&dst, &src};
  for (int k = 0; k < 2; ++k) {
    const auto& blk = spans[k]->block;
    const char* role = k == 0 ? "dst" : "src";
    if (const auto* b = detail::owned_block(blk, state_.get()); b != nullptr) {
      dev[k] = b->device;
    } else if (!host_->owns(blk)) {
      return fail(errc::unsupported, "sim: copy: " + std::string(role) + " is a " +
                                         std::string(to_string(blk->kind)) +
                                         " block that this sim backend did not make or import");
    }
  }
  if (dev[0] < 0 && dev[1] < 0) {
    auto f = host_->copy(dst, src, wait_for);
    if (!f) return std::move(f).err().prefixed("sim");
    return f;
  }
  if (state_->lost_devices.load() != 0) {
    mutex_lock lock(state_->mutex);
    for (int d : dev) {
      if (d >= 0 && state_->devices[static_cast<std::size_t>(d)].lost) {
        return fail(errc::device_lost, "sim: copy: device " + devices()[static_cast<std::size_t>(d)].name +
                                           " is lost (reset with sim_reset_mode::lose)");
      }
    }
  }
  const int engine = dev[0] >= 0 ? dev[0] : dev[1];
  auto f = engines_[static_cast<std::size_t>(engine)]->submit(
      static_cast<char*>(dst.block->host_ptr) + dst.offset,
      static_cast<const char*>(src.block->host_ptr) + src.offset, dst.size, wait_for, dst.block,
      src.block);
  if (!f) return std::move(f).err().prefixed("sim");
  return f;
}

result<fence_ptr> sim_backend::do_fill(const memory_span& dst, std::uint8_t value,
                                       std::span<const fence_ptr> wait_for) {
  const auto* b = detail::owned_block(dst.block, state_.get());
  if (b == nullptr) {
    if (!host_->owns(dst.block)) {
      return fail(errc::unsupported, "sim: fill: dst is a " + std::string(to_string(dst.block->kind)) +
                                         " block that this sim backend did not make or import");
    }
    auto f = host_->fill(dst, value, wait_for);
    if (!f) return std::move(f).err().prefixed("sim");
    return f;
  }
  if (state_->lost_devices.load() != 0) {
    mutex_lock lock(state_->mutex);
    if (state_->devices[static_cast<std::size_t>(b->device)].lost) {
      return fail(errc::device_lost, "sim: fill: device " +
                                         devices()[static_cast<std::size_t>(b->device)].name +
                                         " is lost (reset with sim_reset_mode::lose)");
    }
  }
  // On the device's own engine: ordered with its copies, like a GPU memset
  // on the copy stream.
  auto f = engines_[static_cast<std::size_t>(b->device)]->submit_fill(
      static_cast<char*>(dst.block->host_ptr) + dst.offset, value, dst.size, wait_for, dst.block);
  if (!f) return std::move(f).err().prefixed("sim");
  return f;
}

bool sim_backend::do_release_range(const memory_span& span) noexcept {
  if (const auto* b = detail::owned_block(span.block, state_.get()); b != nullptr) {
    return detail::release_range(*b, span, /*keep_pages=*/true);
  }
  return host_->release_range(span);
}

result<exported_memory> sim_backend::do_export_fd(const memory_span& span) {
  if (const auto* b = detail::owned_block(span.block, state_.get()); b != nullptr) {
    // A part of a block is a buffer carved from a VRAM arena: it gets
    // pages of its own (one buffer per fd).
    return detail::export_span(*b, span, "sim");
  }
  if (host_->owns(span.block)) {
    auto e = host_->export_fd(span);
    if (!e) return std::move(e).err().prefixed("sim");
    return e;
  }
  return fail(errc::unsupported, "sim: export_fd: the " + std::string(to_string(span.block->kind)) +
                                     " block was not made by this sim backend");
}

result<memory_block_ptr> sim_backend::do_import_fd(const exported_memory& exported, int device) {
  if (exported.kind != memory_kind::device) {
    auto b = host_->import_fd(exported, -1);
    if (!b) return std::move(b).err().prefixed("sim");
    return b;
  }
  {
    mutex_lock lock(state_->mutex);
    if (state_->devices[static_cast<std::size_t>(device)].lost) {
      ::close(exported.fd);
      return fail(errc::device_lost, "sim: import_fd: device " + devices()[static_cast<std::size_t>(device)].name +
                                         " is lost (reset with sim_reset_mode::lose)");
    }
  }
  auto b = detail::import_block(exported, device, "sim");
  if (!b) return std::move(b).err();
  (*b)->owner = state_;
  (*b)->reclaimer = state_->reclaimer;
  return memory_block_ptr(std::move(b).value());
}

}  // namespace xbuf
