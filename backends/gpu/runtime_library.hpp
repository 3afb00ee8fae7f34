// SPDX-License-Identifier: MIT
//
// runtime_library.hpp - dlopen() of a GPU runtime, its symbols, and the
// one-table-per-library cache.
//
// Overview
//   xbuf never links a GPU runtime: one build must run on machines with CUDA,
//   HIP, both or neither. Each runtime's loader (cuda_driver.cpp,
//   hip_runtime.cpp) opens its library here, resolves the entry points its
//   X-macro table lists, and keeps the table in a loaded_once cache.
//
// Rules
//   - Libraries are opened RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE and never
//     dlclose()d: runtime threads may still run code from them after the
//     last handle is gone, and their symbols stay out of the global namespace.
//   - A missing library or entry point is errc::no_device: there is no usable
//     runtime, and the caller picks another backend.
//   - loaded_once caches successes only, so a runtime that appears later (or
//     a transient initialization failure) can still be picked up.
#pragma once

#include <dlfcn.h>

#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/mutex.hpp"
#include "core/result.hpp"

namespace xbuf::gpu {

struct runtime_library {
  void* handle = nullptr;
  std::string name;  // the name that opened
};

// Opens the first of `names` that dlopen finds.
// Errors: no_device "<names[0]> not found: <absent_means> (dlopen: <why>)".
// Precondition: names is not empty. Context: may block (library constructors).
result<runtime_library> open_runtime_library(std::span<const std::string> names, std::string_view absent_means);

// The entry point `symbol`, or nullptr. dlsym returns an object pointer;
// POSIX guarantees it converts to a function pointer.
template <class Fn>
void resolve(const runtime_library& lib, const char* symbol, Fn& out) noexcept {
  out = reinterpret_cast<Fn>(::dlsym(lib.handle, symbol));
}

// "<library>: entry point <symbol> missing (<hint>)", errc::no_device.
error missing_entry_point(const runtime_library& lib, std::string_view symbol, std::string_view hint);

// What every runtime's function table knows about itself. Tables are built
// by their loader, then shared as shared_ptr<const T>, so set_loaded (non-
// const) is reachable only while the loader still holds the table alone.
class runtime_table {
 public:
  const std::string& library() const noexcept { return library_; }
  int version() const noexcept { return version_; }
  void set_loaded(std::string library, int version) {
    library_ = std::move(library);
    version_ = version;
  }

  runtime_table(const runtime_table&) = delete;
  runtime_table& operator=(const runtime_table&) = delete;

 protected:
  runtime_table() = default;
  ~runtime_table() = default;

 private:
  std::string library_;
  int version_ = 0;
};

// One immutable table per key, built on first use and shared by everyone.
// Locking: get() holds mutex_ while it builds, so two threads never load
// the same library twice; the loader must not call get() itself.
template <class Table>
class loaded_once {
 public:
  template <class Loader>
  result<std::shared_ptr<const Table>> get(const std::string& key, Loader&& load) XBUF_EXCLUDES(mutex_) {
    mutex_lock lock(mutex_);
    if (auto it = tables_.find(key); it != tables_.end()) return it->second;
    result<std::shared_ptr<const Table>> made = load();
    if (made) tables_.emplace(key, *made);
    return made;
  }

 private:
  xbuf::mutex mutex_;
  std::map<std::string, std::shared_ptr<const Table>> tables_ XBUF_GUARDED_BY(mutex_);
};

}  // namespace xbuf::gpu
