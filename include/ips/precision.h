// Numerics and backend switches of the encoder (config keys precision, channels_last,
// cudnn_benchmark). The encoder is where the FLOPs are (SPEC §3: ~105 MFLOP per 50x50 patch), so
// that is where lower precision pays; the aggregator, scores and loss stay in fp32.
#pragma once

#include <torch/torch.h>

#include "ips/config.h"

namespace ips {

enum class Precision {
    fp32,  // exact: fp32 everywhere, TF32 off
    tf32,  // fp32 tensors, TF32 tensor-core matmuls and convolutions on CUDA (same as fp32 on CPU)
    bf16,  // bf16 autocast of the encoder; fp32 weights, optimizer state and aggregator
};
const char* precision_name(Precision p);

// "auto": bf16 on CUDA devices that compute in bf16 natively (compute capability >= 8.0), fp32
// elsewhere. CPUs stay exact by default: bf16 is fast only on CPUs with bf16 instructions
// (cpu_has_native_bf16) and emulated, slower, on the rest; set precision: bf16 there.
Precision precision_resolve(PrecisionChoice choice, const torch::Device& device);
bool cpu_has_native_bf16();

// "auto": channels-last everywhere. cuDNN's tensor-core convolutions want NHWC; on CPU libtorch's
// NCHW max-pool is the slow part of the trunk (measured: 24 of 80 ms of a 200-patch bf16 chunk),
// and the whole Megapixel MNIST trunk runs 1.65x faster in fp32 (docs/BENCHMARKS.md).
bool channels_last_resolve(Toggle choice, const torch::Device& device);

// Whether libtorch's oneDNN convolutions are right on this CPU: one probe per process (a ResNet
// downsample in both layouts). Where they are not (Debian 13's libtorch 2.6 on some VMs), it turns
// oneDNN off, so libtorch's own kernels run, and says so on stderr. Every model calls it when made.
bool cpu_kernels_check();

// Autocast of the enclosed region to bf16 on the device's type; does nothing for fp32 / tf32.
// Clears libtorch's cast-weight cache on leaving, so weights updated by an optimizer step are
// never seen in a stale cast.
class AutocastScope {
public:
    AutocastScope(Precision p, const torch::Device& device);
    ~AutocastScope();
    AutocastScope(const AutocastScope&) = delete;
    AutocastScope& operator=(const AutocastScope&) = delete;

private:
    bool active_ = false;
    bool was_enabled_ = false;
    c10::ScalarType old_dtype_ = c10::ScalarType::Float;
    c10::DeviceType type_ = c10::DeviceType::CPU;
};

// Process-wide: TF32 on or off to match the precision, cuDNN autotuning. Only CUDA is affected.
void backend_configure(const ComputeOptions& opt, const torch::Device& device);

// Module weights of rank 4 (convolutions) to channels-last, in place. Gradients and optimizer
// state created afterwards follow their parameter's layout.
void module_channels_last(torch::nn::Module& module);

}  // namespace ips
