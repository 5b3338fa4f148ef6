#include "ips/torch_compat.h"

#include <ATen/autocast_mode.h>

#include <cmath>
#include <cstdio>

// The CUDA allocator's statistics exist only where libtorch was built with CUDA and its headers are
// installed (Debian 13's libtorch-cuda-dev, an installed PyTorch with CUDA).
#if __has_include(<cuda_runtime_api.h>) && __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#define IPS_HAVE_CUDA_STATS 1
#endif

namespace ips::compat {

#if IPS_TORCH_AT_LEAST(2, 4)
bool autocast_enabled(c10::DeviceType t) { return at::autocast::is_autocast_enabled(t); }
void autocast_enable(c10::DeviceType t, bool on) { at::autocast::set_autocast_enabled(t, on); }
c10::ScalarType autocast_dtype(c10::DeviceType t) { return at::autocast::get_autocast_dtype(t); }
void autocast_dtype_set(c10::DeviceType t, c10::ScalarType d) { at::autocast::set_autocast_dtype(t, d); }
#else
bool autocast_enabled(c10::DeviceType t) {
    return t == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
void autocast_enable(c10::DeviceType t, bool on) {
    if (t == c10::DeviceType::CUDA) at::autocast::set_enabled(on);
    else at::autocast::set_cpu_enabled(on);
}
c10::ScalarType autocast_dtype(c10::DeviceType t) {
    return t == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
void autocast_dtype_set(c10::DeviceType t, c10::ScalarType d) {
    if (t == c10::DeviceType::CUDA) at::autocast::set_autocast_gpu_dtype(d);
    else at::autocast::set_autocast_cpu_dtype(d);
}
#endif

#if IPS_TORCH_AT_LEAST(2, 0)
torch::Tensor attention_sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    return at::scaled_dot_product_attention(q, k, v);
}
#else
torch::Tensor attention_sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
    const double scale = 1.0 / std::sqrt(static_cast<double>(q.size(-1)));
    return torch::softmax(torch::matmul(q * scale, k.transpose(-2, -1)), -1).matmul(v);
}
#endif

#ifdef IPS_HAVE_CUDA_STATS
bool cuda_allocator_stats_available() { return true; }
void cuda_peak_reset(const torch::Device& d) {
    if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.has_index() ? d.index() : 0);
}
int64_t cuda_peak_bytes(const torch::Device& d) {
    if (!d.is_cuda()) return -1;
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.has_index() ? d.index() : 0);
    return stats.allocated_bytes[0].peak;  // [0]: the aggregate over pool kinds
}
std::vector<std::string> cuda_device_names() {
    std::vector<std::string> out;
    for (int i = 0; i < static_cast<int>(torch::cuda::device_count()); ++i) {
        const cudaDeviceProp* prop = at::cuda::getDeviceProperties(static_cast<int64_t>(i));
        char text[320];
        std::snprintf(text, sizeof text, "%s (%.1f GiB)", prop->name, prop->totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
        out.push_back(text);
    }
    return out;
}
#else
bool cuda_allocator_stats_available() { return false; }
std::vector<std::string> cuda_device_names() { return {}; }
void cuda_peak_reset(const torch::Device& /*device*/) {}
int64_t cuda_peak_bytes(const torch::Device& /*device*/) { return -1; }
#endif

}  // namespace ips::compat
