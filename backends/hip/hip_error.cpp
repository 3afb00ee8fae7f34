// SPDX-License-Identifier: MIT
#include "backends/hip/hip_error.hpp"

#include "backends/hip/hip_runtime.hpp"

namespace xbuf {

namespace {

// HIP's codes follow CUDA's meaning (see cuda_error.cpp): no device ->
// no_device, out of memory -> out_of_memory, sticky faults -> device_lost.
constexpr gpu::known_code known_results[] = {
    {hipErrorInvalidValue, errc::invalid_argument, "hipErrorInvalidValue", "invalid argument"},
    {hipErrorOutOfMemory, errc::out_of_memory, "hipErrorOutOfMemory", "out of memory"},
    {hipErrorNotInitialized, errc::bad_state, "hipErrorNotInitialized", "initialization error"},
    {hipErrorDeinitialized, errc::device_lost, "hipErrorDeinitialized", "driver shutting down"},
    {hipErrorInsufficientDriver, errc::no_device, "hipErrorInsufficientDriver", "driver version is insufficient for runtime version"},
    {hipErrorNoDevice, errc::no_device, "hipErrorNoDevice", "no ROCm-capable device is detected"},
    {hipErrorInvalidDevice, errc::no_device, "hipErrorInvalidDevice", "invalid device ordinal"},
    {hipErrorInvalidContext, errc::bad_state, "hipErrorInvalidContext", "invalid device context"},
    {hipErrorInvalidHandle, errc::invalid_argument, "hipErrorInvalidHandle", "invalid resource handle"},
    {hipErrorNotReady, errc::busy, "hipErrorNotReady", "device not ready"},
    {hipErrorIllegalAddress, errc::device_lost, "hipErrorIllegalAddress", "an illegal memory access was encountered"},
    {hipErrorLaunchFailure, errc::device_lost, "hipErrorLaunchFailure", "unspecified launch failure"},
    {hipErrorNotSupported, errc::unsupported, "hipErrorNotSupported", "operation not supported"},
    {hipErrorUnknown, errc::io_error, "hipErrorUnknown", "unknown error"},
    {hipErrorECCNotCorrectable, errc::device_lost, "hipErrorECCNotCorrectable", "uncorrectable ECC error encountered"},
    {hipErrorPeerAccessUnsupported, errc::unsupported, "hipErrorPeerAccessUnsupported", "peer access is not supported between these two devices"},
    {hipErrorAlreadyMapped, errc::already_exists, "hipErrorAlreadyMapped", "resource already mapped"},
    {hipErrorHostMemoryAlreadyRegistered, errc::already_exists, "hipErrorHostMemoryAlreadyRegistered", "part or all of the requested memory range is already mapped"},
    {hipErrorNotMapped, errc::bad_state, "hipErrorNotMapped", "resource not mapped"},
};

std::string or_empty(const char* s) { return s != nullptr ? s : ""; }

}  // namespace

const gpu::runtime_codes<hipError_t> hip_codes{known_results, hipSuccess, "hipSuccess", "hipError",
                                               "unrecognized HIP error"};

// ROCm 5's hipGetErrorString returns the name again; the table's
// description is then what a person reads (make_runtime_error).
error hip_error(const hip_runtime* runtime, hipError_t rc, std::string_view call) {
  if (runtime == nullptr) return hip_codes.make(rc, "", "", call);
  return hip_codes.make(rc, or_empty(runtime->hipGetErrorName(rc)), or_empty(runtime->hipGetErrorString(rc)), call);
}

}  // namespace xbuf
