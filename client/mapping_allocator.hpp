// SPDX-License-Identifier: MIT
//
// mapping_allocator.hpp - (internal) what both allocator modes share: the
// attachments' views in this process, kept at one address across moves,
// and the begin_use / end_use protocol (allocator.hpp, Overview).
//
// Overview
//   A mode (embedded, daemon) implements the raw_* calls - the manager's
//   attach, map, unmap and detach as it reaches them - and reports each
//   move_notify to moved(). This class keeps, per attachment, the
//   file_view of the buffer's export (or the manager's own address where
//   the memory is not a file) and the generation it shows:
//     map        raw_map (waits for a running move), then export + map the
//                fd - or, when the generation changed since the view was
//                made, export + remap at the same address. Each view holds
//                the export it shows and releases it (release_export) when
//                it is unmapped, detached, freed or remapped onto a newer
//                one, so the daemon frees what this client is done with.
//                A GPU runtime's VRAM is shown in a device_window (CUDA:
//                imported, mapped into a reserved device range), which
//                keeps its address across moves between VRAM placements;
//                a move to host memory shows a file_view (another address:
//                the view's data says so), and the way back to VRAM the
//                window's address again.
//     begin_use  map (skipped while no move_notify came since); add a fence of the given usage (no move starts until
//                it signals); raw_map again: an unchanged generation means
//                no move slipped in between, else signal the fence and go
//                round (bounded, then busy).
//     end_use    signals the use's fence.
//
// Rules
//   - Locks: an attachment's own mutex, then the mode's (its connection or
//     the manager), then table_mutex_ (a leaf: moved() takes it from inside
//     the mode's calls). Never the other way round.
//   - moved() only marks state and calls the user's callback; it runs on
//     whatever thread delivered the event (see allocator.hpp Rules).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "client/allocator.hpp"
#include "backends/gpu/device_window.hpp"
#include "client/file_view.hpp"
#include "core/mutex.hpp"
#include "core/thread_annotations.hpp"

namespace xbuf::client::detail {

// What the manager says about a mapped attachment (after any wait).
struct raw_mapping {
  placement where;
  bool peer = false;
  std::string reason;
  std::uint64_t generation = 0;
  void* direct = nullptr;  // an address valid in this process, if the mode has one
  std::uint64_t size = 0;  // the buffer's bytes
};

class mapping_allocator : public allocator {
 public:
  ~mapping_allocator() override;

  result<attachment_id> attach(buffer_id id, int device, attach_mode mode, bool peer_capable) final;
  status detach(attachment_id id) final;
  result<mapped_view> map(attachment_id id, std::chrono::milliseconds timeout) final;
  status unmap(attachment_id id) final;
  result<mapped_view> begin_use(attachment_id id, fence_usage usage, std::chrono::milliseconds timeout) final;
  status end_use(attachment_id id, int error) final;
  status free(buffer_id id) final;
  void on_move(move_callback cb) final;

 protected:
  mapping_allocator() = default;

  virtual result<attachment_id> raw_attach(buffer_id id, int device, attach_mode mode, bool peer_capable) = 0;
  virtual status raw_detach(attachment_id id) = 0;
  virtual result<raw_mapping> raw_map(attachment_id id, std::chrono::milliseconds timeout) = 0;
  virtual status raw_unmap(attachment_id id) = 0;
  virtual status raw_free(buffer_id id) = 0;
  // This process's device `device` for a VRAM export of the mode's
  // backend (local_gpus.hpp), or null when VRAM exports are memory files
  // (sim): mapped with file_view then.
  virtual result<std::shared_ptr<gpu::gpu_device>> vram_device(int device) = 0;

  // A move_notify for one of our attachments (from the mode's event path).
  void moved(const move_event& e);
  // Drops every view (the mode's connection or manager is going away).
  void drop_views() noexcept;

 private:
  struct view_state {
    xbuf::mutex mutex;
    buffer_id buffer = 0;
    int device = -1;  // the attachment's importer (-1: the CPU)
    std::optional<file_view> view XBUF_GUARDED_BY(mutex);
    // A GPU runtime's VRAM export, imported into a device range of ours;
    // kept reserved while the buffer is elsewhere, so it comes back to the
    // same address.
    std::unique_ptr<gpu::device_window> window XBUF_GUARDED_BY(mutex);
    bool in_window XBUF_GUARDED_BY(mutex) = false;  // the window, not `view`, shows the buffer
    // `view` maps an export this client holds (released when the view
    // goes or shows a newer one: the daemon frees nothing still held).
    bool export_held XBUF_GUARDED_BY(mutex) = false;
    void* direct XBUF_GUARDED_BY(mutex) = nullptr;
    std::uint64_t generation XBUF_GUARDED_BY(mutex) = 0;
    raw_mapping last XBUF_GUARDED_BY(mutex);  // the manager's answer the view shows
    bool mapped XBUF_GUARDED_BY(mutex) = false;
    fence_handle use_fence XBUF_GUARDED_BY(mutex) = 0;  // 0: no use begun
    std::atomic<bool> stale{false};                     // a move_notify came since the view
  };

  result<std::shared_ptr<view_state>> find(attachment_id id, const char* what);
  // map's work with the attachment's lock held.
  result<mapped_view> map_locked(attachment_id id, view_state& s, std::chrono::milliseconds timeout)
      XBUF_REQUIRES(s.mutex);
  static mapped_view view_of(const view_state& s) XBUF_REQUIRES(s.mutex);
  // Unmaps the view and releases the export it showed.
  void drop_view_locked(view_state& s) XBUF_REQUIRES(s.mutex);
  // Shows export `e` (the fd consumed) in the view: a device window for a
  // GPU runtime's VRAM, else a file_view.
  status show_export_locked(view_state& s, const exported_buffer& e) XBUF_REQUIRES(s.mutex);

  xbuf::mutex table_mutex_;
  std::map<attachment_id, std::shared_ptr<view_state>> views_ XBUF_GUARDED_BY(table_mutex_);
  move_callback on_move_ XBUF_GUARDED_BY(table_mutex_);
};

}  // namespace xbuf::client::detail
