#include <gtest/gtest.h>

#include "ips/torch_compat.h"

using namespace ips;

// Each libtorch version compiles one side of torch_compat.cpp; this runs whichever side was built
// (CI runs it against 1.13 and, in the Debian 13 root, against 2.6).
TEST(TorchCompat, AutocastStateRoundTripsOnTheBuiltSide) {
    const auto cpu = c10::DeviceType::CPU;
    const bool was = compat::autocast_enabled(cpu);
    const auto dtype = compat::autocast_dtype(cpu);
    compat::autocast_enable(cpu, true);
    compat::autocast_dtype_set(cpu, torch::kBFloat16);
    EXPECT_TRUE(compat::autocast_enabled(cpu));
    EXPECT_EQ(compat::autocast_dtype(cpu), torch::kBFloat16);
    compat::autocast_enable(cpu, was);
    compat::autocast_dtype_set(cpu, dtype);
    EXPECT_EQ(compat::autocast_enabled(cpu), was);
    EXPECT_EQ(compat::autocast_dtype(cpu), dtype);
}

TEST(TorchCompat, CudaPeakIsUnavailableOffCuda) {
    EXPECT_EQ(compat::cuda_peak_bytes(torch::kCPU), -1);
    compat::cuda_peak_reset(torch::kCPU);  // a no-op, not an error
    // Where libtorch has no CUDA, the statistics are never claimed to be there.
    if (!torch::cuda::is_available()) {
        EXPECT_EQ(compat::cuda_peak_bytes(torch::Device(torch::kCUDA, 0)), -1);
    }
}

TEST(TorchCompat, VersionMacroAgreesWithTheHeaders) {
    EXPECT_TRUE(IPS_TORCH_AT_LEAST(1, 13));
    EXPECT_TRUE(IPS_TORCH_AT_LEAST(TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR));
    EXPECT_FALSE(IPS_TORCH_AT_LEAST(TORCH_VERSION_MAJOR + 1, 0));
}
