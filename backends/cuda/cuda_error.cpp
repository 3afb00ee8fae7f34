// SPDX-License-Identifier: MIT
#include "backends/cuda/cuda_error.hpp"

#include "backends/cuda/cuda_driver.hpp"

namespace xbuf {

namespace {

// The codes xbuf can meet on its own paths. Names and texts are the
// driver's (cuGetErrorName/cuGetErrorString), which win when it is loaded.
// Sticky errors (device_lost): the context is corrupted and every later
// call fails. No usable device (no_device): choose another backend.
constexpr gpu::known_code known_results[] = {
    {CUDA_ERROR_INVALID_VALUE, errc::invalid_argument, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, errc::out_of_memory, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, errc::bad_state, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_DEINITIALIZED, errc::device_lost, "CUDA_ERROR_DEINITIALIZED", "driver shutting down"},
    {CUDA_ERROR_STUB_LIBRARY, errc::no_device, "CUDA_ERROR_STUB_LIBRARY", "CUDA driver is a stub library"},
    {CUDA_ERROR_DEVICE_UNAVAILABLE, errc::no_device, "CUDA_ERROR_DEVICE_UNAVAILABLE", "CUDA-capable device(s) is/are busy or unavailable"},
    {CUDA_ERROR_NO_DEVICE, errc::no_device, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, errc::no_device, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, errc::bad_state, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_ALREADY_MAPPED, errc::already_exists, "CUDA_ERROR_ALREADY_MAPPED", "resource already mapped"},
    {CUDA_ERROR_NOT_MAPPED, errc::bad_state, "CUDA_ERROR_NOT_MAPPED", "resource not mapped"},
    {CUDA_ERROR_ECC_UNCORRECTABLE, errc::device_lost, "CUDA_ERROR_ECC_UNCORRECTABLE", "uncorrectable ECC error encountered"},
    {CUDA_ERROR_PEER_ACCESS_UNSUPPORTED, errc::unsupported, "CUDA_ERROR_PEER_ACCESS_UNSUPPORTED", "peer access is not supported between these two devices"},
    {CUDA_ERROR_NVLINK_UNCORRECTABLE, errc::device_lost, "CUDA_ERROR_NVLINK_UNCORRECTABLE", "uncorrectable NVLink error detected during the execution"},
    {CUDA_ERROR_OPERATING_SYSTEM, errc::io_error, "CUDA_ERROR_OPERATING_SYSTEM", "OS call failed or operation not supported on this OS"},
    {CUDA_ERROR_INVALID_HANDLE, errc::invalid_argument, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, errc::not_found, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, errc::busy, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, errc::device_lost, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_FAILED, errc::device_lost, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
    {CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, errc::already_exists, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED", "part or all of the requested memory range is already mapped"},
    {CUDA_ERROR_NOT_PERMITTED, errc::permission_denied, "CUDA_ERROR_NOT_PERMITTED", "operation not permitted"},
    {CUDA_ERROR_NOT_SUPPORTED, errc::unsupported, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, errc::no_device, "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH", "system has unsupported display driver / cuda driver combination"},
    {CUDA_ERROR_TIMEOUT, errc::timed_out, "CUDA_ERROR_TIMEOUT", "timeout occurred"},
    {CUDA_ERROR_UNKNOWN, errc::io_error, "CUDA_ERROR_UNKNOWN", "unknown error"},
    {CUDA_ERROR_DEVICE_NOT_LICENSED, errc::no_device, "CUDA_ERROR_DEVICE_NOT_LICENSED", "this device is not licensed for this operation"},
    {CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE, errc::no_device, "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", "forward compatibility was attempted on non supported hardware"},
    {CUDA_ERROR_SYSTEM_NOT_READY, errc::no_device, "CUDA_ERROR_SYSTEM_NOT_READY", "system not yet initialized"},
    {CUDA_ERROR_HARDWARE_STACK_ERROR, errc::device_lost, "CUDA_ERROR_HARDWARE_STACK_ERROR", "an error occurred on the device stack"},
    {CUDA_ERROR_ILLEGAL_INSTRUCTION, errc::device_lost, "CUDA_ERROR_ILLEGAL_INSTRUCTION", "an illegal instruction was encountered"},
    {CUDA_ERROR_MISALIGNED_ADDRESS, errc::device_lost, "CUDA_ERROR_MISALIGNED_ADDRESS", "misaligned address"},
    {CUDA_ERROR_INVALID_ADDRESS_SPACE, errc::device_lost, "CUDA_ERROR_INVALID_ADDRESS_SPACE", "operation not supported on global/shared address space"},
    {CUDA_ERROR_INVALID_PC, errc::device_lost, "CUDA_ERROR_INVALID_PC", "invalid program counter"},
    {CUDA_ERROR_CONTEXT_IS_DESTROYED, errc::device_lost, "CUDA_ERROR_CONTEXT_IS_DESTROYED", "context is destroyed"},
    {CUDA_ERROR_CONTAINED, errc::device_lost, "CUDA_ERROR_CONTAINED", "an error was contained"},
    {CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER, errc::unsupported, "CUDA_ERROR_CALL_REQUIRES_NEWER_DRIVER", "the call requires a newer driver"},
    {CUDA_ERROR_LAUNCH_TIMEOUT, errc::timed_out, "CUDA_ERROR_LAUNCH_TIMEOUT", "the launch timed out and was terminated"},
    {CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED, errc::already_exists, "CUDA_ERROR_PEER_ACCESS_ALREADY_ENABLED", "peer access is already enabled"},
    {CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, errc::bad_state, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED", "pointer does not correspond to a registered memory region"},
    {CUDA_ERROR_ILLEGAL_STATE, errc::bad_state, "CUDA_ERROR_ILLEGAL_STATE", "operation is not permitted in the current state"},
};

}  // namespace

const gpu::runtime_codes<CUresult> cuda_codes{known_results, CUDA_SUCCESS, "CUDA_SUCCESS", "CUDA_ERROR_",
                                              "unrecognized CUDA error"};

error cuda_error(const cuda_driver* driver, CUresult rc, std::string_view call) {
  const char* name = nullptr;
  const char* text = nullptr;
  // Both return CUDA_ERROR_INVALID_VALUE for codes the driver does not know.
  if (driver != nullptr && driver->cuGetErrorName(rc, &name) != CUDA_SUCCESS) name = nullptr;
  if (driver != nullptr && driver->cuGetErrorString(rc, &text) != CUDA_SUCCESS) text = nullptr;
  return cuda_codes.make(rc, name != nullptr ? name : "", text != nullptr ? text : "", call);
}

}  // namespace xbuf
