// runtime_configure: the intra-op thread count, and large buffers kept by glibc instead of being
// mapped and unmapped on every allocation.
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "ips/runtime.h"

using namespace ips;

TEST(Runtime, ConfigureSetsTheThreadCount) {
    const int before = torch::get_num_threads();
    runtime_configure(3);
    EXPECT_EQ(torch::get_num_threads(), 3);
    runtime_configure(1);
    EXPECT_EQ(torch::get_num_threads(), 1);
    runtime_configure(0);  // all cores
    EXPECT_EQ(torch::get_num_threads(), static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    runtime_configure(before);
    EXPECT_EQ(torch::get_num_threads(), before);
}

#if defined(__SANITIZE_ADDRESS__)
#define IPS_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IPS_UNDER_ASAN 1
#endif
#endif

TEST(Runtime, ConfigureKeepsLargeBuffersOnTheHeap) {
#ifdef IPS_UNDER_ASAN
    GTEST_SKIP() << "AddressSanitizer replaces glibc's malloc: its mmap and trim thresholds do not apply";
#endif
    constexpr size_t kBig = size_t(48) << 20;  // larger than glibc's largest dynamic mmap threshold (32 MiB)
    auto touch_and_free = [&](size_t* mapped_growth) {
        const size_t before = mallinfo2().hblkhd;  // bytes in mmapped chunks
        char* p = static_cast<char*>(std::malloc(kBig));
        ASSERT_NE(p, nullptr);
        std::memset(p, 1, kBig);
        *mapped_growth = mallinfo2().hblkhd - before;
        std::free(p);
    };
    // glibc's defaults, fixed (not dynamic), as a known starting point: a big buffer is mmapped.
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    size_t growth = 0;
    touch_and_free(&growth);
    EXPECT_GE(growth, kBig);

    const int threads = torch::get_num_threads();
    runtime_configure(threads);
    touch_and_free(&growth);
    EXPECT_EQ(growth, 0u);  // served from the heap
    // Freed, it stays with the process for the next buffer (the trim threshold is 1 GiB).
    EXPECT_GE(mallinfo2().arena, kBig);
    EXPECT_EQ(torch::get_num_threads(), threads);
}
