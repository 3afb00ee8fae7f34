// SPDX-License-Identifier: MIT
//
// backend_factories.hpp - the named backends the conformance suite (and its
// cross-process helper) run against.
//
// Adding a backend is one entry in backend_factories.cpp: a name and a
// factory. A factory may return errc::no_device (runtime or GPU missing); the
// suite then skips that backend's cases with the factory's message.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "backends/backend.hpp"
#include "core/result.hpp"

namespace xbuf::test {

struct named_backend_factory {
  std::string name;
  std::function<result<std::unique_ptr<backend>>()> create;
};

// Every backend built into this test binary, sim first.
const std::vector<named_backend_factory>& backend_factories();

// The names, in the same order (for INSTANTIATE_TEST_SUITE_P).
std::vector<std::string> backend_factory_names();

// The GPU runtimes among them ("cuda", "hip"), for the GPU suite
// (gpu_backend_test.cpp); empty where neither was built.
std::vector<std::string> gpu_backend_names();

// Creates the backend called `name`. Errors: not_found (no such entry), or the factory's.
result<std::unique_ptr<backend>> create_test_backend(std::string_view name);

// Turns result<unique_ptr<Derived>> into result<unique_ptr<backend>>.
template <class Derived>
result<std::unique_ptr<backend>> as_backend(result<std::unique_ptr<Derived>> r) {
  if (!r) return std::move(r).err();
  return std::unique_ptr<backend>(std::move(r).value());
}

}  // namespace xbuf::test
