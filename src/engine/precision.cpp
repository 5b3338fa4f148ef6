#include "ips/precision.h"

#include <ATen/autocast_mode.h>

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
