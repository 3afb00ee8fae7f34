// SPDX-License-Identifier: MIT
//
// CUDA backend: the loader's failure paths and the CUresult mapping, which
// need no GPU. The cases that need a device are the GPU suite's
// (gpu_backend_test.cpp, instantiated for "cuda"; ctest label "gpu").
#include <gtest/gtest.h>

#include <cerrno>

#include "backends/cuda/cuda_backend.hpp"
#include "backends/cuda/cuda_driver.hpp"
#include "backends/cuda/cuda_error.hpp"

namespace xbuf {
namespace {

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

TEST(CudaErrorTest, MessageNamesTheCallTheErrorAndItsDescription) {
  const auto e = cuda_error(nullptr, CUDA_ERROR_OUT_OF_MEMORY, "cuMemCreate(device 1, 2097152 bytes)");
  EXPECT_EQ(e.code, errc::out_of_memory);
  EXPECT_EQ(e.message, "cuMemCreate(device 1, 2097152 bytes): CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
}

TEST(CudaErrorTest, MapsResultsToWhatTheCallerCanDo) {
  EXPECT_EQ(cuda_codes.code(CUDA_SUCCESS), errc::ok);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_NO_DEVICE), errc::no_device);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_INVALID_DEVICE), errc::no_device);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_STUB_LIBRARY), errc::no_device);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_INVALID_VALUE), errc::invalid_argument);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_ILLEGAL_ADDRESS), errc::device_lost);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_ECC_UNCORRECTABLE), errc::device_lost);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_NOT_SUPPORTED), errc::unsupported);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_NOT_PERMITTED), errc::permission_denied);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_NOT_READY), errc::busy);
  EXPECT_EQ(cuda_codes.code(CUDA_ERROR_OPERATING_SYSTEM), errc::io_error);
}

TEST(CudaErrorTest, UnknownCodesAreNamedByNumber) {
  const auto code = static_cast<CUresult>(12345);
  EXPECT_EQ(cuda_codes.name(code), "CUDA_ERROR_12345");
  const auto e = cuda_error(nullptr, code, "cuFoo");
  EXPECT_EQ(e.code, errc::io_error);
  EXPECT_EQ(e.message, "cuFoo: CUDA_ERROR_12345 (unrecognized CUDA error)");
}

TEST(CudaErrorTest, FailedWorkGivesFencesEioOrEnodev) {
  EXPECT_EQ(cuda_codes.fence_errno_of(CUDA_SUCCESS), 0);
  EXPECT_EQ(cuda_codes.fence_errno_of(CUDA_ERROR_OPERATING_SYSTEM), -EIO);
  EXPECT_EQ(cuda_codes.fence_errno_of(CUDA_ERROR_LAUNCH_FAILED), -ENODEV);
}

TEST(CudaLoaderTest, MissingLibraryIsNoDeviceNamingIt) {
  cuda_config cfg;
  cfg.library = "libxbuf-no-such-cuda.so.1";
  auto b = create_cuda_backend(cfg);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::no_device);
  EXPECT_TRUE(contains(b.err().message, "libxbuf-no-such-cuda.so.1 not found: no NVIDIA driver on this machine"))
      << b.err().message;
}

TEST(CudaLoaderTest, LibraryWithoutTheDriverApiIsNoDeviceNamingTheSymbol) {
  // libm exists everywhere and exports no cu* symbol.
  auto drv = cuda_driver::load("libm.so.6");
  ASSERT_FALSE(drv);
  EXPECT_EQ(drv.code(), errc::no_device);
  EXPECT_TRUE(contains(drv.err().message, "libm.so.6: entry point cuGetErrorName missing")) << drv.err().message;
}

TEST(CudaLoaderTest, DefaultFactoryFindsDevicesOrSaysWhyNot) {
  auto b = create_cuda_backend();
  if (b) {
    EXPECT_EQ((*b)->name(), "cuda");
    EXPECT_FALSE((*b)->devices().empty());
    return;
  }
  EXPECT_EQ(b.code(), errc::no_device);
  const auto& m = b.err().message;
  EXPECT_TRUE(contains(m, "libcuda.so.1 not found") || contains(m, "cuInit") || contains(m, "cuDeviceGetCount"))
      << m;
}

}  // namespace
}  // namespace xbuf
