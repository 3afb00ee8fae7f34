// SPDX-License-Identifier: MIT
#include "backends/host/host_backend.hpp"

#include <hwloc.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>
#include <utility>

#include "backends/detail/copy_engine.hpp"
#include "backends/detail/memfd_block.hpp"
#include "core/errno_text.hpp"

namespace xbuf {

namespace detail {

// What host blocks give back when they go, and the topology their NUMA nodes
// come from. Shared by the backend and every block it made, so blocks may outlive
// the backend.
struct host_state {
  hwloc_topology_t topology = nullptr;  // read-only after load: safe from any thread
  bool multi_node = false;

  mutable std::mutex mutex;  // leaf
  std::size_t pinned_bytes = 0;              // guarded by mutex
  std::size_t pageable_bytes = 0;            // guarded by mutex
  std::uint64_t unlocked_pinned_blocks = 0;  // guarded by mutex
  std::vector<std::string> warnings;         // guarded by mutex
  // Unmaps dropped blocks off the thread that dropped them.
  const std::shared_ptr<mapping_reclaimer> reclaimer = std::make_shared<mapping_reclaimer>();

  host_state() = default;
  host_state(const host_state&) = delete;
  host_state& operator=(const host_state&) = delete;
  ~host_state() {
    if (topology != nullptr) hwloc_topology_destroy(topology);
  }
};

}  // namespace detail

namespace {


std::string memlock_limit_text() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return "RLIMIT_MEMLOCK unknown";
  if (rl.rlim_cur == RLIM_INFINITY) return "RLIMIT_MEMLOCK is unlimited";
  return "RLIMIT_MEMLOCK is " + std::to_string(rl.rlim_cur) + " bytes";
}

}  // namespace

host_backend::host_backend(backend_caps caps, host_config config,
                           std::shared_ptr<detail::host_state> state,
                           std::unique_ptr<detail::copy_engine> engine, std::vector<int> numa_nodes)
    : backend(caps, {}),
      config_(std::move(config)),
      state_(std::move(state)),
      engine_(std::move(engine)),
      numa_nodes_(std::move(numa_nodes)) {}

// Stop the copy thread first: it cancels unfinished copies while everything
// they reference is still here.
host_backend::~host_backend() { engine_.reset(); }

result<std::unique_ptr<host_backend>> create_host_backend(const host_config& config) {
  auto state = std::make_shared<detail::host_state>();
  if (hwloc_topology_init(&state->topology) != 0) {
    state->topology = nullptr;
    return fail(errc::io_error, config.name + ": hwloc_topology_init failed: " + errno_text(errno));
  }
  if (hwloc_topology_load(state->topology) != 0) {
    return fail(errc::io_error, config.name + ": hwloc_topology_load failed: " + errno_text(errno));
  }
  std::vector<int> nodes;
  for (hwloc_obj_t n = hwloc_get_next_obj_by_type(state->topology, HWLOC_OBJ_NUMANODE, nullptr);
       n != nullptr; n = hwloc_get_next_obj_by_type(state->topology, HWLOC_OBJ_NUMANODE, n)) {
    nodes.push_back(static_cast<int>(n->os_index));
  }
  if (nodes.empty()) nodes.push_back(0);  // hwloc always reports one; be safe
  state->multi_node = nodes.size() > 1;

  auto engine = detail::copy_engine::create(
      {.name = config.name + " copy", .driver_name = "host-copy", .bytes_per_second = 0,
       .inline_max_bytes = detail::inline_copy_max});
  if (!engine) return std::move(engine).err();

  backend_caps caps;
  caps.export_fd = false;  // about device memory; host has none (host blocks do export)
  caps.host_mapped_device = false;
  caps.pinned_host = true;
  caps.peer_query = false;
  caps.fill = true;
  caps.export_detaches_pinned_ranges = true;
  caps.export_detaches_pageable_ranges = true;
  caps.device_granularity = detail::page_size();
  return std::unique_ptr<host_backend>(new host_backend(caps, config, std::move(state),
                                                        std::move(engine).value(), std::move(nodes)));
}

host_stats host_backend::stats() const {
  host_stats s;
  {
    std::lock_guard lock(state_->mutex);
    s.pinned_bytes = state_->pinned_bytes;
    s.pageable_bytes = state_->pageable_bytes;
    s.unlocked_pinned_blocks = state_->unlocked_pinned_blocks;
  }
  const auto e = engine_->stats();
  s.copies_completed = e.completed;
  s.copies_failed = e.failed;
  s.bytes_copied = e.bytes_copied;
  return s;
}

std::vector<std::string> host_backend::warnings() const {
  std::lock_guard lock(state_->mutex);
  return state_->warnings;
}

bool host_backend::owns(const memory_block_ptr& block) const noexcept {
  return detail::owned_block(block, state_.get()) != nullptr;
}

result<memory_block_ptr> host_backend::do_allocate_device(int device, std::size_t /*bytes*/) {
  // Unreachable through backend::allocate_device (no devices), kept honest.
  return fail(errc::no_device, config_.name + ": allocate_device: device " + std::to_string(device) +
                                   " does not exist (host memory has no devices)");
}

result<memory_block_ptr> host_backend::do_allocate_host(std::size_t bytes, bool pinned, int numa_node) {
  const std::string what = config_.name + ": allocate_host: ";
  bool known_node = numa_node == -1;
  for (int n : numa_nodes_) known_node = known_node || n == numa_node;
  if (!known_node) {
    std::string list;
    for (int n : numa_nodes_) list += (list.empty() ? "" : ", ") + std::to_string(n);
    return fail(errc::invalid_argument, what + "NUMA node " + std::to_string(numa_node) +
                                            " does not exist (nodes: " + list + ")");
  }

  // Reserve against the cap first; everything after can be undone.
  const std::size_t page = detail::page_size();
  if (bytes > std::numeric_limits<std::size_t>::max() - page) {
    return fail(errc::out_of_memory, what + std::to_string(bytes) + " bytes is beyond any address space");
  }
  const std::size_t charged = (bytes + page - 1) / page * page;
  auto state = state_;
  if (pinned) {
    std::lock_guard lock(state->mutex);
    if (charged > config_.pinned_limit_bytes ||
        state->pinned_bytes > config_.pinned_limit_bytes - charged) {
      return fail(errc::quota_exceeded,
                  what + "pinning " + std::to_string(charged) + " bytes would pass the pinned cap of " +
                      std::to_string(config_.pinned_limit_bytes) + " bytes (" +
                      std::to_string(state->pinned_bytes) + " bytes pinned now)");
    }
    state->pinned_bytes += charged;
  } else {
    std::lock_guard lock(state->mutex);
    state->pageable_bytes += charged;
  }
  auto block = std::make_shared<detail::memfd_block>();
  block->charged_bytes = charged;
  block->kind = pinned ? memory_kind::host_pinned : memory_kind::host_pageable;
  // From here the block's destructor gives the reservation back on any failure.
  block->on_release = [state](const detail::memfd_block& b) {
    std::lock_guard lock(state->mutex);
    if (b.kind == memory_kind::host_pinned) {
      state->pinned_bytes -= b.charged_bytes;
    } else {
      state->pageable_bytes -= b.charged_bytes;
    }
  };
  block->owner = state;
  block->reclaimer = state->reclaimer;

  auto mapping = detail::memfd_mapping::create("xbuf-" + config_.name, bytes);
  if (!mapping) return std::move(mapping).err().prefixed(config_.name + ": allocate_host");
  block->mapping = std::move(mapping).value();
  void* p = block->mapping.data();

  // Bind before the first touch so the pages are born on the node.
  if (numa_node >= 0 && state->multi_node) {
    if (auto s = block->mapping.bind_to_node(numa_node); !s) {
      return std::move(s).err().prefixed(config_.name + ": allocate_host");
    }
  }

  if (pinned) {
    // The raw syscall: sanitizer runtimes replace mlock() with a no-op that
    // reports success (because of mlockall and their shadow memory), which
    // would make sanitized builds claim pages are locked when they are not.
    if (::syscall(SYS_mlock, p, block->mapping.size()) == 0) {
      block->locked = true;
    } else {
      const int e = errno;
      std::string why = what + "cannot pin " + std::to_string(charged) + " bytes: mlock failed: " +
                        errno_text(e) + "; " + memlock_limit_text() + " (without CAP_IPC_LOCK it caps " +
                        "locked memory per process)";
      if (!config_.pinned_fallback_unlocked) {
        return fail(errc::out_of_memory, why + "; raise it (ulimit -l) or set pinned_fallback_unlocked");
      }
      std::lock_guard lock(state->mutex);
      ++state->unlocked_pinned_blocks;
      // Bounded: the first warnings say it all, later ones only count.
      if (state->warnings.size() < 64) {
        state->warnings.push_back(why + "; handed out unlocked (pinned_fallback_unlocked)");
      }
    }
  }

  block->size = bytes;
  block->host_ptr = p;
  block->device_ptr = 0;
  block->fd = block->mapping.fd();
  block->numa_node = numa_node;
  block->device = -1;
  return memory_block_ptr(std::move(block));
}

result<fence_ptr> host_backend::do_copy(const memory_span& dst, const memory_span& src,
                                        std::span<const fence_ptr> wait_for) {
  for (const auto* s : {&dst, &src}) {
    if (!owns(s->block)) {
      return fail(errc::unsupported,
                  config_.name + ": copy: " + (s == &dst ? "dst" : "src") + " is a " +
                      std::string(to_string(s->block->kind)) +
                      " block this host backend did not make or import");
    }
  }
  return engine_->submit(static_cast<char*>(dst.block->host_ptr) + dst.offset,
                         static_cast<const char*>(src.block->host_ptr) + src.offset, dst.size,
                         wait_for, dst.block, src.block);
}

result<fence_ptr> host_backend::do_fill(const memory_span& dst, std::uint8_t value,
                                        std::span<const fence_ptr> wait_for) {
  if (!owns(dst.block)) {
    return fail(errc::unsupported, config_.name + ": fill: dst is a " +
                                       std::string(to_string(dst.block->kind)) +
                                       " block this host backend did not make or import");
  }
  return engine_->submit_fill(static_cast<char*>(dst.block->host_ptr) + dst.offset, value,
                              dst.size, wait_for, dst.block);
}

result<exported_memory> host_backend::do_export_fd(const memory_span& span) {
  const auto* b = detail::owned_block(span.block, state_.get());
  if (b == nullptr) {
    return fail(errc::unsupported, config_.name + ": export_fd: the " +
                                       std::string(to_string(span.block->kind)) +
                                       " block was not made by this host backend");
  }
  // A part of a block is a buffer carved from a host chunk: it gets pages
  // of its own (one buffer per fd).
  return detail::export_span(*b, span, config_.name);
}

bool host_backend::do_release_range(const memory_span& span) noexcept {
  const auto* b = detail::owned_block(span.block, state_.get());
  return b == nullptr || detail::release_range(*b, span, /*keep_pages=*/true);
}

result<memory_block_ptr> host_backend::do_import_fd(const exported_memory& exported, int device) {
  // An imported pinned block is not locked again: its pages are the
  // exporter's, and the exporter's lock keeps them resident.
  auto b = detail::import_block(exported, device, config_.name);
  if (!b) return std::move(b).err();
  (*b)->owner = state_;
  (*b)->reclaimer = state_->reclaimer;
  return memory_block_ptr(std::move(b).value());
}

}  // namespace xbuf
