// SPDX-License-Identifier: MIT
//
// HIP backend. This machine class (Debian's libamdhip64, no AMD GPU) is the
// "runtime present, no device" case: the factory must say so cleanly. The
// cases that need a device are the GPU suite's (gpu_backend_test.cpp,
// instantiated for "hip"; ctest label "gpu").
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cerrno>

#include "backends/hip/hip_backend.hpp"
#include "backends/hip/hip_error.hpp"
#include "backends/hip/hip_runtime.hpp"

// ROCm 5.2's runtime keeps a few hundred bytes from its first call
// (hipGetDeviceCount) that it never frees; LeakSanitizer must not blame xbuf
// for them. Read by LSan in sanitizer builds, ignored otherwise.
extern "C" const char* __lsan_default_suppressions() { return "leak:libamdhip64.so\n"; }

namespace xbuf {
namespace {

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

bool hip_runtime_installed() {
  for (const char* name : {"libamdhip64.so", "libamdhip64.so.6", "libamdhip64.so.5"}) {
    if (void* h = ::dlopen(name, RTLD_LAZY | RTLD_LOCAL)) {
      ::dlclose(h);
      return true;
    }
  }
  return false;
}

TEST(HipErrorTest, MessageNamesTheCallTheErrorAndItsDescription) {
  const auto e = hip_error(nullptr, hipErrorNoDevice, "hipGetDeviceCount");
  EXPECT_EQ(e.code, errc::no_device);
  EXPECT_EQ(e.message, "hipGetDeviceCount: hipErrorNoDevice (no ROCm-capable device is detected)");
}

TEST(HipErrorTest, MapsResultsToWhatTheCallerCanDo) {
  EXPECT_EQ(hip_codes.code(hipSuccess), errc::ok);
  EXPECT_EQ(hip_codes.code(hipErrorOutOfMemory), errc::out_of_memory);
  EXPECT_EQ(hip_codes.code(hipErrorInvalidDevice), errc::no_device);
  EXPECT_EQ(hip_codes.code(hipErrorInvalidValue), errc::invalid_argument);
  EXPECT_EQ(hip_codes.code(hipErrorIllegalAddress), errc::device_lost);
  EXPECT_EQ(hip_codes.code(hipErrorNotSupported), errc::unsupported);
  EXPECT_EQ(hip_codes.code(hipErrorNotReady), errc::busy);
  EXPECT_EQ(hip_codes.fence_errno_of(hipErrorLaunchFailure), -ENODEV);
  EXPECT_EQ(hip_codes.fence_errno_of(hipErrorUnknown), -EIO);
  EXPECT_EQ(hip_codes.name(static_cast<hipError_t>(4242)), "hipError4242");
}

TEST(HipLoaderTest, MissingLibraryIsNoDeviceNamingIt) {
  hip_config cfg;
  cfg.libraries = {"libxbuf-no-such-hip.so"};
  auto b = create_hip_backend(cfg);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.code(), errc::no_device);
  EXPECT_TRUE(contains(b.err().message, "libxbuf-no-such-hip.so not found: no ROCm HIP runtime")) << b.err().message;
}

TEST(HipLoaderTest, LibraryWithoutTheRuntimeApiIsNoDeviceNamingTheSymbol) {
  auto rt = hip_runtime::load({"libm.so.6"});
  ASSERT_FALSE(rt);
  EXPECT_EQ(rt.code(), errc::no_device);
  EXPECT_TRUE(contains(rt.err().message, "libm.so.6: entry point hipGetErrorName missing")) << rt.err().message;
}

// The real runtime, really loaded: with no AMD GPU the factory reports
// no_device naming the HIP call that found none and HIP's own message.
TEST(HipLoaderTest, RuntimeWithoutGpuReportsNoDeviceNamingTheCall) {
  if (!hip_runtime_installed()) GTEST_SKIP() << "libamdhip64 is not installed";
  auto b = create_hip_backend();
  if (b) GTEST_SKIP() << "an AMD GPU is present (" << (*b)->devices()[0].name << "): GpuTest covers it";
  EXPECT_EQ(b.code(), errc::no_device);
  const auto& m = b.err().message;
  // The call, then HIP's error name (hipErrorNoDevice where no GPU exists).
  EXPECT_TRUE(contains(m, "hipGetDeviceCount: hipError")) << m;
}

TEST(HipLoaderTest, RuntimeLoadsOnceAndReportsItsVersion) {
  if (!hip_runtime_installed()) GTEST_SKIP() << "libamdhip64 is not installed";
  auto a = hip_runtime::load();
  ASSERT_TRUE(a) << a.err().describe();
  auto b = hip_runtime::load();
  ASSERT_TRUE(b);
  EXPECT_EQ(a->get(), b->get());
  EXPECT_GE((*a)->major_version(), 5);
  EXPECT_EQ((*a)->has_vmm(), (*a)->major_version() >= 6 && (*a)->hipMemCreate != nullptr);
}

}  // namespace
}  // namespace xbuf
