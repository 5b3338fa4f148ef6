#include "ips/read_bench.h"

#include <ATen/Parallel.h>

#include <chrono>

#include "ips/bench.h"
#include "ips/progress.h"
#include "ips/slide_source.h"

namespace ips {

nlohmann::json read_bench_run(const std::string& slide_path, const ReadBenchOptions& opt) {
    auto slide = slide_open(slide_path);
    TileGrid grid = tile_grid_full(*slide, opt.level, opt.patch, opt.patch);
    auto source = slide_source_make(slide, grid, 3, normalization_of(Normalize::imagenet));
    const int64_t n = std::min(opt.tiles, source->size());
    auto order = torch::randperm(source->size(), torch::kLong).narrow(0, 0, n);
    const int64_t rss_before = peak_rss_bytes();
    const auto start = std::chrono::steady_clock::now();
    Progress bar("read", n, "tile");
    for (int64_t s = 0; s < n; s += opt.chunk) {
        const int64_t count = std::min(opt.chunk, n - s);
        source->read(order.narrow(0, s, count));
        if (opt.progress) bar.update(count);
    }
    if (opt.progress) bar.finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& L = slide_levels(*slide)[0];
    return {{"slide", slide_path},
            {"width", L.width},
            {"height", L.height},
            {"level", opt.level},
            {"patch", opt.patch},
            {"grid_tiles", source->size()},
            {"tiles_read", n},
            {"patches_per_s", n / seconds},
            {"seconds", seconds},
            {"peak_rss_gib", peak_rss_bytes() / double(1 << 30)},
            {"peak_rss_gib_before_reading", rss_before / double(1 << 30)},
            {"threads", at::get_num_threads()}};
}

}  // namespace ips
