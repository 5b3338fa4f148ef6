#include "ips/runtime.h"

#include <malloc.h>
#include <torch/torch.h>

#include <thread>

namespace ips {

void runtime_configure(int threads) {
    const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(n);
    // A fixed threshold also turns off glibc's dynamic adjustment, which never rises above 32 MiB:
    // smaller than one activation tensor of a 200-patch chunk.
    mallopt(M_MMAP_THRESHOLD, 1 << 30);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

}  // namespace ips
