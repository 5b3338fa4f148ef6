// `ips bench-read` on the real Aperio slide: every field of the report, and the tiles it reads.
#include <gtest/gtest.h>
#include <ATen/Parallel.h>

#include <filesystem>

#include "test_support.h"
#include "ips/read_bench.h"

namespace fs = std::filesystem;
using namespace ips;

namespace {

std::string svs_path() { return ips::test::test_slide_path(); }

}  // namespace

TEST(ReadBench, ReportsTheSlideAndTheTilesRead) {
    ASSERT_TRUE(fs::exists(svs_path())) << "the Aperio test slide is missing: " << svs_path();
    ReadBenchOptions opt;
    opt.tiles = 20;
    opt.chunk = 8;  // 8 + 8 + 4
    opt.progress = false;
    const auto j = read_bench_run(svs_path(), opt);
    for (const char* key : {"slide", "width", "height", "level", "patch", "grid_tiles", "tiles_read", "patches_per_s",
                            "seconds", "peak_rss_gib", "peak_rss_gib_before_reading", "threads"})
        EXPECT_TRUE(j.contains(key)) << key << " missing in " << j.dump();
    EXPECT_EQ(j["slide"].get<std::string>(), svs_path());
    EXPECT_EQ(j["width"].get<int64_t>(), 2220);
    EXPECT_EQ(j["height"].get<int64_t>(), 2967);
    EXPECT_EQ(j["level"].get<int>(), 0);
    EXPECT_EQ(j["patch"].get<int64_t>(), 256);
    EXPECT_EQ(j["grid_tiles"].get<int64_t>(), 8 * 11);
    EXPECT_EQ(j["tiles_read"].get<int64_t>(), 20);
    EXPECT_GT(j["patches_per_s"].get<double>(), 0);
    EXPECT_GT(j["seconds"].get<double>(), 0);
    EXPECT_NEAR(j["patches_per_s"].get<double>() * j["seconds"].get<double>(), 20, 1e-6);
    EXPECT_GE(j["peak_rss_gib"].get<double>(), j["peak_rss_gib_before_reading"].get<double>());
    EXPECT_GT(j["peak_rss_gib_before_reading"].get<double>(), 0);
    EXPECT_EQ(j["threads"].get<int>(), at::get_num_threads());
}

TEST(ReadBench, ReadsAtMostTheWholeGrid) {
    ASSERT_TRUE(fs::exists(svs_path())) << "the Aperio test slide is missing: " << svs_path();
    ReadBenchOptions opt;
    opt.patch = 512;  // 4 x 5 tiles
    opt.tiles = 1000;
    opt.progress = false;
    const auto j = read_bench_run(svs_path(), opt);
    EXPECT_EQ(j["grid_tiles"].get<int64_t>(), 4 * 5);
    EXPECT_EQ(j["tiles_read"].get<int64_t>(), 20);  // min(tiles, grid)
    EXPECT_EQ(j["patch"].get<int64_t>(), 512);
    opt.level = 1;  // the slide has one level
    EXPECT_THROW(read_bench_run(svs_path(), opt), std::runtime_error);
    EXPECT_THROW(read_bench_run(svs_path() + ".missing", ReadBenchOptions{}), std::runtime_error);
}
