#include <gtest/gtest.h>

#include "ips/config.h"
#include "ips/model.h"
#include "ips/precision.h"
#include "test_util.h"

using namespace ips;

namespace {

Config mnist_config(const std::vector<std::string>& sets) {
    return config_load(std::string(IPS_SOURCE_DIR) + "/configs/megapixel_mnist.yaml", sets);
}

void weights_copy(IPSNet& from, IPSNet& to) {
    torch::NoGradGuard no_grad;
    auto src = from->named_parameters();
    for (auto& p : to->named_parameters()) p.value().copy_(src[p.key()]);
    auto bufs = from->named_buffers();
    for (auto& b : to->named_buffers()) b.value().copy_(bufs[b.key()]);
}

}  // namespace

TEST(Precision, AutoIsExactOnCpuAndNamesAreChecked) {
    EXPECT_EQ(precision_resolve(PrecisionChoice::automatic, torch::kCPU), Precision::fp32);
    EXPECT_EQ(precision_resolve(PrecisionChoice::bf16, torch::kCPU), Precision::bf16);
    EXPECT_EQ(precision_resolve(PrecisionChoice::tf32, torch::kCPU), Precision::tf32);
    EXPECT_TRUE(channels_last_resolve(Toggle::automatic, torch::kCPU));
    EXPECT_FALSE(channels_last_resolve(Toggle::off, torch::kCPU));
    // Names are checked once, where the config is read.
    EXPECT_THROW(config_parse("precision: fp16\ntasks: {t: {id: 0, name: a}}"), ConfigError);
    EXPECT_THROW(config_parse("channels_last: yes_please\ntasks: {t: {id: 0, name: a}}"), ConfigError);
}

// One input channel makes an NCHW weight look channels-last already; it must be re-strided anyway,
// or the first convolution's output stays NCHW and the max-pool after it runs the slow NCHW kernel.
TEST(Precision, ChannelsLastReachesTheOneChannelStem) {
    IPSNet net = test::net_of(mnist_config({"channels_last=true"}));
    net_to(net, torch::kCPU);
    auto stem = net->encoder->named_parameters()["0.weight"];  // [64, 1, 7, 7]
    EXPECT_EQ(stem.stride(1), 1);
    torch::NoGradGuard no_grad;
    net->eval();
    auto x = torch::rand({3, 1, 50, 50});
    auto first = net->encoder->ptr<torch::nn::Conv2dImpl>(0)->forward(x.contiguous(torch::MemoryFormat::ChannelsLast));
    EXPECT_TRUE(first.is_contiguous(torch::MemoryFormat::ChannelsLast));

    IPSNet plain = test::net_of(mnist_config({"channels_last=false"}));
    net_to(plain, torch::kCPU);
    plain->eval();
    weights_copy(net, plain);
    EXPECT_TRUE(torch::allclose(net->embed(x), plain->embed(x), 1e-4, 1e-5)) << "layout must not change values";
}

// bf16 autocast of the encoder: float32 embeddings out, close to fp32, and autocast switched off
// again (with its cast cache cleared) when the scope ends.
TEST(Precision, Bf16EncoderStaysCloseAndLeavesAutocastOff) {
    IPSNet fp32 = test::net_of(mnist_config({"precision=fp32"}));
    IPSNet bf16 = test::net_of(mnist_config({"precision=bf16"}));
    weights_copy(fp32, bf16);
    fp32->eval();
    bf16->eval();
    torch::NoGradGuard no_grad;
    auto x = torch::rand({8, 1, 50, 50});
    auto want = fp32->embed(x), got = bf16->embed(x);
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    const double rel = (got - want).norm().item<double>() / want.norm().item<double>();
    EXPECT_LT(rel, 2e-2) << "bf16 keeps ~3 significant digits";
    EXPECT_GT(rel, 0.0) << "the bf16 path was not taken";
    auto a = torch::rand({4, 4});
    EXPECT_EQ(torch::mm(a, a).scalar_type(), torch::kFloat32) << "autocast still on after the encoder";
}

// The probe of libtorch's oneDNN convolutions: a ResNet downsample (1x1, stride 2, 256 -> 512)
// that Debian 13's oneDNN computed 44 % off in channels-last on a VM without cache sizes in cpuid.
// After it, whatever it decided, channels-last and NCHW convolutions agree, and it drew nothing
// from torch's generator.
TEST(Precision, AfterTheKernelProbeChannelsLastAndNchwConvolutionsAgree) {
    torch::manual_seed(3);
    const auto a = torch::rand({4});
    torch::manual_seed(3);
    const bool exact = cpu_kernels_check();
    EXPECT_TRUE(torch::equal(torch::rand({4}), a));
    EXPECT_EQ(cpu_kernels_check(), exact);  // once per process
    for (const int64_t c : {64, 256, 512}) {
        const auto x = torch::randn({3, c, 13, 13}), w = torch::randn({2 * c, c, 1, 1});
        const auto want = torch::conv2d(x, w, {}, 2);
        const auto got = torch::conv2d(x.contiguous(torch::MemoryFormat::ChannelsLast),
                                       w.contiguous(torch::MemoryFormat::ChannelsLast), {}, 2);
        EXPECT_TRUE(torch::allclose(got, want, 1e-4, 1e-3)) << c << " channels";
    }
}
