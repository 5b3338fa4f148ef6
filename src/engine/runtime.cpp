#include "ips/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <torch/torch.h>

#include <ATen/Context.h>
#include <ATen/detail/CUDAHooksInterface.h>

#include <thread>

#include "ips/torch_compat.h"

namespace ips {

namespace {

// OpenBLAS's own controls, looked up at run time: libtorch links the generic libblas.so.3, behind
// which Debian's alternatives put OpenBLAS (pthread or OpenMP build), the reference BLAS or none.
template <typename F>
F* openblas_fn(const char* name) {
    return reinterpret_cast<F*>(dlsym(RTLD_DEFAULT, name));
}

}  // namespace

bool runtime_blas_has_own_threads() {
    static const bool own = [] {
        auto* parallel = openblas_fn<int()>("openblas_get_parallel");  // 0 serial, 1 pthreads, 2 OpenMP
        return parallel && parallel() == 1;
    }();
    return own;
}

RuntimeGemmBound::RuntimeGemmBound() {
    if (!runtime_blas_has_own_threads() || at::in_parallel_region()) return;
    threads_ = at::get_num_threads();
    if (threads_ > 1) at::set_num_threads(1);
    else threads_ = 0;
}

RuntimeGemmBound::~RuntimeGemmBound() {
    if (threads_ > 0) at::set_num_threads(threads_);
}

void runtime_configure(int threads) {
    const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(n);
    // Otherwise OpenBLAS's pthreads take every core whatever --threads says.
    if (auto* set = openblas_fn<void(int)>("openblas_set_num_threads")) set(n);
    // A fixed threshold also turns off glibc's dynamic adjustment, which never rises above 32 MiB:
    // smaller than one activation tensor of a 200-patch chunk.
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

void runtime_memory_release() { malloc_trim(0); }

namespace {

// CUDA's version numbers as cudart and cuDNN report them: 12040 -> "12.4", 90100 -> "9.1.0".
std::string cuda_version_text(long v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
std::string cudnn_version_text(long v) {
    return v >= 90000 ? std::to_string(v / 10000) + "." + std::to_string(v % 10000 / 100) + "." + std::to_string(v % 100)
                      : std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 100) + "." + std::to_string(v % 100);
}

}  // namespace

std::string runtime_versions() {
    std::string s = std::string("ips ") + IPS_VERSION + "\n";
    s += std::string("libtorch ") + TORCH_VERSION;
    // A libtorch without CUDA answers these through placeholder hooks that throw.
    const auto& hooks = at::detail::getCUDAHooks();
    try {
        s += ", CUDA " + cuda_version_text(hooks.versionCUDART());
        s += hooks.compiledWithCuDNN() ? ", cuDNN " + cudnn_version_text(hooks.versionCuDNN()) : ", no cuDNN";
        if (!at::hasCUDA()) s += " (no CUDA device visible)";
    } catch (const std::exception&) {
        s += ", CPU only (built without CUDA)";
    }
    s += "\ndevices: cpu (" + std::to_string(std::thread::hardware_concurrency()) + " cores)";
    for (const auto& name : compat::cuda_device_names()) s += ", cuda: " + name;
    return s;
}

}  // namespace ips
