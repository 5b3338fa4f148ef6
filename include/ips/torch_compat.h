// The one place where code differs between the libtorch versions ips builds against: Debian 12's
// 1.13 (CPU), Debian 13's 2.6 (CPU or CUDA) and the libtorch of an installed PyTorch 2.x. Each
// function here has one definition per side in torch_compat.cpp; the rest of the code calls these.
#pragma once

#include <torch/torch.h>
#include <torch/version.h>

#include <string>
#include <vector>

// True when compiling against libtorch MAJOR.MINOR or newer.
#define IPS_TORCH_AT_LEAST(major, minor) \
    (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

namespace ips::compat {

// Autocast state per device type. PyTorch 2.4 replaced the per-device functions (is_enabled /
// is_cpu_enabled, get_autocast_gpu_dtype / ...) with ones that take the device type.
bool autocast_enabled(c10::DeviceType type);
void autocast_enable(c10::DeviceType type, bool on);
c10::ScalarType autocast_dtype(c10::DeviceType type);
void autocast_dtype_set(c10::DeviceType type, c10::ScalarType dtype);

// The CUDA caching allocator's peak of allocated bytes on `device` since the last reset, or -1
// where it cannot be read (CPU devices, libtorch without CUDA, or without the CUDA headers).
bool cuda_allocator_stats_available();
void cuda_peak_reset(const torch::Device& device);
int64_t cuda_peak_bytes(const torch::Device& device);

// "NVIDIA H200 (139.8 GiB)" per visible CUDA device; empty without CUDA.
std::vector<std::string> cuda_device_names();

// softmax(q k^T / sqrt(d)) v without masks or dropout; q, k, v: [B, H, T, d] -> [B, H, T, d].
// The fused kernel (scaled_dot_product_attention: flash / memory-efficient on CUDA, blocked on
// CPU) from 2.0 on; written out on 1.13, where it holds the [B, H, T, T] weights.
torch::Tensor attention_sdpa(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace ips::compat

// c10d, for distributed.cpp alone (its headers are heavy): a Gloo or NCCL process group is a
// c10d::ProcessGroup in 1.13 and a c10d::Backend (wrapped by a ProcessGroup) from 2.0 on. ips holds
// the Gloo / NCCL object itself, so only the name of its base differs.
#ifdef IPS_COMPAT_C10D
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
namespace ips::compat {
#if IPS_TORCH_AT_LEAST(2, 0)
using CommBackend = c10d::Backend;
#else
using CommBackend = c10d::ProcessGroup;
#endif
// 2.4 made libuv the TCPStore's default transport, and Debian's 2.6 is built without libuv. The
// classic transport exists in every version ips builds against.
inline void tcp_store_classic(c10d::TCPStoreOptions& o) {
#if IPS_TORCH_AT_LEAST(2, 2)
    o.useLibUV = false;
#else
    (void)o;
#endif
}
}  // namespace ips::compat
#endif
