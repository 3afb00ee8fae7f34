// SPDX-License-Identifier: MIT
#include "backends/cuda/cuda_error.hpp"

#include <cerrno>

#include "backends/cuda/cuda_driver.hpp"

namespace xbuf {

namespace {

struct known_result {
  CUresult rc;
  const char* name;
  const char* text;
};

// The codes xbuf can meet on its own paths, with short descriptions; the
// driver's own strings win when it is loaded.
constexpr known_result known_results[] = {
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {CUDA_ERROR_DEVICE_UNAVAILABLE, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_ALREADY_MAPPED, "CUDA_ERROR_ALREADY_MAPPED", "resource already mapped"},
    {CUDA_ERROR_NOT_MAPPED, "CUDA_ERROR_NOT_MAPPED", "resource not mapped"},
    {CUDA_ERROR_ECC_UNCORRECTABLE, "CUDA_ERROR_ECC_UNCORRECTABLE", "uncorrectable ECC error encountered"},
    {CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", "peer access is not supported between these two devices"},
    {CUDA_ERROR_NVLINK_UNCORRECTABLE, "CUDA_ERROR_NVLINK_UNCORRECTABLE", "uncorrectable NVLink error detected during the execution"},
    {CUDA_ERROR_OPERATING_SYSTEM, "CUDA_ERROR_OPERATING_SYSTEM", "OS call failed or operation not supported on this OS"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
    {CUDA_ERROR_NOT_PERMITTED, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {CUDA_ERROR_TIMEOUT, "CUDA_ERROR_TIMEOUT", "timeout occurred"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

const known_result* find_known(CUresult rc) noexcept {
  for (const auto& k : known_results) {
    if (k.rc == rc) return &k;
  }
  return nullptr;
}

}  // namespace

errc cuda_errc(CUresult rc) noexcept {
  switch (rc) {
    case CUDA_SUCCESS: return errc::ok;
    case CUDA_ERROR_OUT_OF_MEMORY: return errc::out_of_memory;
    case CUDA_ERROR_INVALID_VALUE:
    case CUDA_ERROR_INVALID_HANDLE: return errc::invalid_argument;
    // No usable device: the caller should choose another backend.
    case CUDA_ERROR_NO_DEVICE:
    case CUDA_ERROR_INVALID_DEVICE:
    case CUDA_ERROR_DEVICE_UNAVAILABLE:
    case CUDA_ERROR_DEVICE_NOT_LICENSED:
    case CUDA_ERROR_STUB_LIBRARY:
    case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
    case CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE:
    case CUDA_ERROR_SYSTEM_NOT_READY: return errc::no_device;
    // Sticky errors: the context is corrupted and every later call fails.
    case CUDA_ERROR_ECC_UNCORRECTABLE:
    case CUDA_ERROR_NVLINK_UNCORRECTABLE:
    case CUDA_ERROR_ILLEGAL_ADDRESS:
    case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION:
    case CUDA_ERROR_MISALIGNED_ADDRESS:
    case CUDA_ERROR_INVALID_ADDRESS_SPACE:
    case CUDA_ERROR_INVALID_PC:
    case CUDA_ERROR_LAUNCH_FAILED:
    case CUDA_ERROR_CONTEXT_IS_DESTROYED:
    case CUDA_ERROR_DEINITIALIZED:
    case CUDA_ERROR_CONTAINED: return errc::device_lost;
    case CUDA_ERROR_NOT_SUPPORTED:
    case CUDA_ERROR_PEER_ACCESS_UNSUPPORTED:
    case CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER: return errc::unsupported;
    case CUDA_ERROR_NOT_PERMITTED: return errc::permission_denied;
    case CUDA_ERROR_NOT_READY: return errc::busy;
    case CUDA_ERROR_TIMEOUT:
    case CUDA_ERROR_LAUNCH_TIMEOUT: return errc::timed_out;
    case CUDA_ERROR_ALREADY_MAPPED:
    case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED:
    case CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED: return errc::already_exists;
    case CUDA_ERROR_NOT_INITIALIZED:
    case CUDA_ERROR_INVALID_CONTEXT:
    case CUDA_ERROR_NOT_MAPPED:
    case CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED:
    case CUDA_ERROR_ILLEGAL_STATE: return errc::bad_state;
    case CUDA_ERROR_NOT_FOUND: return errc::not_found;
    default: return errc::io_error;
  }
}

std::string cuda_result_name(CUresult rc) {
  if (rc == CUDA_SUCCESS) return "CUDA_SUCCESS";
  if (const auto* k = find_known(rc)) return k->name;
  return "CUDA_ERROR_" + std::to_string(static_cast<int>(rc));
}

error cuda_error(const cuda_driver* driver, CUresult rc, std::string_view call) {
  std::string name;
  std::string text;
  if (driver != nullptr) {
    const char* n = nullptr;
    const char* s = nullptr;
    // Both return CUDA_ERROR_INVALID_VALUE for codes the driver does not know.
    if (driver->cuGetErrorName(rc, &n) == CUDA_SUCCESS && n != nullptr) name = n;
    if (driver->cuGetErrorString(rc, &s) == CUDA_SUCCESS && s != nullptr) text = s;
  }
  const auto* k = find_known(rc);
  if (name.empty()) name = cuda_result_name(rc);
  if (text.empty()) text = k != nullptr ? k->text : "unrecognized CUDA error";
  errc code = cuda_errc(rc);
  if (code == errc::ok) code = errc::io_error;  // misuse: an "error" that succeeded
  return fail(code, std::string(call) + ": " + name + " (" + text + ")");
}

int cuda_fence_errno(CUresult rc) noexcept {
  if (rc == CUDA_SUCCESS) return 0;
  const errc code = cuda_errc(rc);
  // A copy that the device could not finish is an I/O error for the fence
  // unless the device itself is gone.
  return code == errc::device_lost || code == errc::no_device ? -ENODEV : -EIO;
}

}  // namespace xbuf
