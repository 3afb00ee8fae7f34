// SPDX-License-Identifier: MIT
//
// guarded.hpp - where exceptions stop and become error values.
//
// Overview
//   xbuf's APIs return errors as values (core/result.hpp) and throw nothing.
//   Code inside them still calls the standard library, which may throw
//   (std::bad_alloc above all). guarded() is the one boundary: it runs a
//   function returning result<T> or status and turns an escaping exception
//   into an error naming where it happened. The backend contract, the memory
//   manager's public API and the C ABI stand behind it.
//
// Rules
//   - std::bad_alloc becomes errc::out_of_memory ("<who>: <what>: out of
//     process memory"); any other std::exception errc::io_error with its
//     what(). The names are views, so the boundary costs no allocation.
//   - Use it at API boundaries only; inside, errors are values already.
#pragma once

#include <exception>
#include <new>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace xbuf {

namespace detail {
// The error for an exception that reached a boundary; never throws (a
// message that cannot be built is left short).
error boundary_error(std::string_view who, std::string_view what, std::exception_ptr e) noexcept;
}  // namespace detail

// Runs f() (returning result<T> or status) and converts what it throws.
// `who` is the component ("sim", "memory manager"), `what` the call.
// Context: as f; adds no locking.
template <class F>
auto guarded(std::string_view who, std::string_view what, F&& f) noexcept -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    return detail::boundary_error(who, what, std::current_exception());
  }
}

}  // namespace xbuf
