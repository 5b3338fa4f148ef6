#include "ips/precision.h"

#include <ATen/autocast_mode.h>

#include <cstdio>
#include <stdexcept>

#include "ips/torch_compat.h"

namespace ips {
namespace {

bool cuda_has_native_bf16(const torch::Device& device) {
    // A tiny bf16 matmul fails on devices without bf16 support; compute capability is not in
    // libtorch's public C++ API without the CUDA headers, which the CPU build lacks.
    try {
        auto a = torch::ones({2, 2}, torch::TensorOptions().device(device).dtype(torch::kBFloat16));
        return torch::mm(a, a).sum().item<float>() == 8.0f;
    } catch (const std::exception&) {
        return false;
    }
}

}  // namespace

const char* precision_name(Precision p) {
    switch (p) {
        case Precision::fp32: return "fp32";
        case Precision::tf32: return "tf32";
        case Precision::bf16: return "bf16";
    }
    return "?";
}

bool cpu_has_native_bf16() {
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    static const bool has = __builtin_cpu_supports("avx512bf16") || __builtin_cpu_supports("amx-bf16");
    return has;
#else
    return false;
#endif
}

Precision precision_resolve(PrecisionChoice choice, const torch::Device& device) {
    switch (choice) {
        case PrecisionChoice::fp32: return Precision::fp32;
        case PrecisionChoice::tf32: return Precision::tf32;
        case PrecisionChoice::bf16: return Precision::bf16;
        case PrecisionChoice::automatic: break;
    }
    if (!device.is_cuda()) return Precision::fp32;
    static const bool cuda_bf16 = cuda_has_native_bf16(device);
    return cuda_bf16 ? Precision::bf16 : Precision::tf32;
}

bool cpu_kernels_check() {
    // Debian 13's libtorch 2.6 with its oneDNN 3.7, on a VM whose cpuid reports no cache sizes
    // (lscpu lists none), computes convolutions wrong with AVX-512: a 1x1 stride-2 one of 256
    // channels (a ResNet downsample) 44-57 % off in channels-last, NaN losses when training in
    // NCHW, a division by zero at 512 channels; PyTorch itself alike, and exact without oneDNN.
    // That downsample in both layouts tells; the inputs are not random, so the probe leaves
    // torch's generator as it was.
    static const bool exact = [] {
        torch::NoGradGuard no_grad;
        const auto x = torch::sin(torch::arange(2 * 256 * 7 * 7, torch::kFloat32)).view({2, 256, 7, 7});
        const auto w = torch::cos(torch::arange(512 * 256, torch::kFloat32) * 0.37).view({512, 256, 1, 1});
        const auto want = torch::conv2d(x, w, {}, 2);
        const auto got = torch::conv2d(x.contiguous(torch::MemoryFormat::ChannelsLast),
                                       w.contiguous(torch::MemoryFormat::ChannelsLast), {}, 2);
        const bool same = (got - want).abs().max().item<float>() <= 1e-4f * want.abs().max().item<float>();
        if (!same) {
            at::globalContext().setUserEnabledMkldnn(false);
            std::fprintf(stderr, "note: libtorch's oneDNN convolutions give wrong numbers on this CPU (a probe "
                                 "convolution); ips runs libtorch's own kernels instead\n");
        }
        return same;
    }();
    return exact;
}

bool channels_last_resolve(Toggle choice, const torch::Device& /*device*/) {
    return choice != Toggle::off;
}

AutocastScope::AutocastScope(Precision p, const torch::Device& device) : type_(device.type()) {
    if (p != Precision::bf16) return;
    active_ = true;
    was_enabled_ = compat::autocast_enabled(type_);
    old_dtype_ = compat::autocast_dtype(type_);
    compat::autocast_enable(type_, true);
    compat::autocast_dtype_set(type_, torch::kBFloat16);
    at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    compat::autocast_enable(type_, was_enabled_);
    compat::autocast_dtype_set(type_, old_dtype_);
}

void backend_configure(const ComputeOptions& opt, const torch::Device& device) {
    if (!device.is_cuda()) return;
    const bool tf32 = precision_resolve(opt.precision, device) != Precision::fp32;
    at::globalContext().setAllowTF32CuBLAS(tf32);
    at::globalContext().setAllowTF32CuDNN(tf32);
    at::globalContext().setBenchmarkCuDNN(opt.cudnn_benchmark);
}

void module_channels_last(torch::nn::Module& module) {
    torch::NoGradGuard no_grad;
    // Not contiguous(ChannelsLast): for one input channel an NCHW weight already counts as
    // channels-last and would be kept, and the convolution's output would then stay NCHW.
    for (auto& p : module.parameters()) {
        if (p.dim() != 4) continue;
        p.set_data(torch::empty(p.sizes(), p.options().memory_format(torch::MemoryFormat::ChannelsLast)).copy_(p.data()));
    }
}

}  // namespace ips
