// SPDX-License-Identifier: MIT
#include "backends/hip/hip_error.hpp"

#include <cerrno>

#include "backends/hip/hip_runtime.hpp"

namespace xbuf {

namespace {

struct known_result {
  hipError_t rc;
  const char* name;
  const char* text;
};

constexpr known_result known_results[] = {
    {hipErrorInvalidValue, "hipErrorInvalidValue", "invalid argument"},
    {hipErrorOutOfMemory, "hipErrorOutOfMemory", "out of memory"},
    {hipErrorNotInitialized, "hipErrorNotInitialized", "initialization error"},
    {hipErrorDeinitialized, "hipErrorDeinitialized", "driver shutting down"},
    {hipErrorInsufficientDriver, "hipErrorInsufficientDriver", "driver version is insufficient for runtime version"},
    {hipErrorNoDevice, "hipErrorNoDevice", "no ROCm-capable device is detected"},
    {hipErrorInvalidDevice, "hipErrorInvalidDevice", "invalid device ordinal"},
    {hipErrorInvalidContext, "hipErrorInvalidContext", "invalid device context"},
    {hipErrorInvalidHandle, "hipErrorInvalidHandle", "invalid resource handle"},
    {hipErrorNotReady, "hipErrorNotReady", "device not ready"},
    {hipErrorIllegalAddress, "hipErrorIllegalAddress", "an illegal memory access was encountered"},
    {hipErrorLaunchFailure, "hipErrorLaunchFailure", "unspecified launch failure"},
    {hipErrorNotSupported, "hipErrorNotSupported", "operation not supported"},
    {hipErrorUnknown, "hipErrorUnknown", "unknown error"},
};

}  // namespace

errc hip_errc(hipError_t rc) noexcept {
  switch (rc) {
    case hipSuccess: return errc::ok;
    case hipErrorOutOfMemory: return errc::out_of_memory;
    case hipErrorInvalidValue:
    case hipErrorInvalidHandle: return errc::invalid_argument;
    case hipErrorNoDevice:
    case hipErrorInvalidDevice:
    case hipErrorInsufficientDriver: return errc::no_device;
    case hipErrorIllegalAddress:
    case hipErrorLaunchFailure:
    case hipErrorECCNotCorrectable:
    case hipErrorDeinitialized: return errc::device_lost;
    case hipErrorNotSupported:
    case hipErrorPeerAccessUnsupported: return errc::unsupported;
    case hipErrorNotReady: return errc::busy;
    case hipErrorAlreadyMapped:
    case hipErrorHostMemoryAlreadyRegistered: return errc::already_exists;
    case hipErrorNotInitialized:
    case hipErrorInvalidContext:
    case hipErrorNotMapped: return errc::bad_state;
    default: return errc::io_error;
  }
}

std::string hip_result_name(hipError_t rc) {
  if (rc == hipSuccess) return "hipSuccess";
  for (const auto& k : known_results) {
    if (k.rc == rc) return k.name;
  }
  return "hipError" + std::to_string(static_cast<int>(rc));
}

error hip_error(const hip_runtime* runtime, hipError_t rc, std::string_view call) {
  std::string name;
  std::string text;
  if (runtime != nullptr) {
    if (const char* n = runtime->hipGetErrorName(rc)) name = n;
    if (const char* s = runtime->hipGetErrorString(rc)) text = s;
  }
  if (name.empty()) name = hip_result_name(rc);
  // ROCm 5's hipGetErrorString returns the name again; a description is
  // what a person needs.
  if (text == name) text.clear();
  if (text.empty()) {
    text = "unrecognized HIP error";
    for (const auto& k : known_results) {
      if (k.rc == rc) text = k.text;
    }
  }
  errc code = hip_errc(rc);
  if (code == errc::ok) code = errc::io_error;
  return fail(code, std::string(call) + ": " + name + " (" + text + ")");
}

int hip_fence_errno(hipError_t rc) noexcept {
  if (rc == hipSuccess) return 0;
  const errc code = hip_errc(rc);
  return code == errc::device_lost || code == errc::no_device ? -ENODEV : -EIO;
}

}  // namespace xbuf
