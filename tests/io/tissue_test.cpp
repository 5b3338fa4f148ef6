// Where the tissue is: Otsu's threshold on known histograms, the tissue mask and tiles of the real
// Aperio slide, and the tile grid a config asks for (level or mpp, stride, tissue).
#include <gtest/gtest.h>

#include <filesystem>

#include "test_support.h"
#include "io/test_images.h"
#include "ips/slide.h"
#include "ips/slide_source.h"
#include "ips/tissue.h"

namespace fs = std::filesystem;
using namespace ips;
using namespace ips::test;

namespace {

torch::Tensor values(std::vector<std::pair<int, int64_t>> value_count) {
    std::vector<torch::Tensor> parts;
    for (auto [v, n] : value_count) parts.push_back(torch::full({n}, v, torch::kUInt8));
    return torch::cat(parts);
}

DataOptions grid_options(int64_t patch, int64_t stride) {
    DataOptions d;
    d.patch_size = {patch, patch};
    d.patch_stride = {stride, stride};
    return d;
}

}  // namespace

// Moved from slide_test.cpp.
TEST(Tissue, OtsuSplitsTwoPopulations) {
    auto g = torch::cat({torch::full({1000}, 60, torch::kUInt8), torch::full({3000}, 220, torch::kUInt8)});
    const int t = otsu_threshold(g);
    EXPECT_GT(t, 60);
    EXPECT_LE(t, 220);
    EXPECT_EQ(otsu_threshold(torch::full({100}, 255, torch::kUInt8)), 255);  // flat: nothing below
}

TEST(Tissue, OtsuThresholdOfKnownHistograms) {
    // Two clusters: every t in (42, 180] splits them alike; the first such t is returned.
    EXPECT_EQ(otsu_threshold(values({{40, 10}, {41, 30}, {42, 10}, {180, 20}, {181, 50}, {182, 20}})), 43);
    // Three values: {0} | {100, 200, 200} has between-class variance 1*3*(166.7)^2 = 83,333;
    // {0, 100} | {200, 200} has 2*2*150^2 = 90,000, the larger: t = 101.
    EXPECT_EQ(otsu_threshold(values({{0, 1}, {100, 1}, {200, 2}})), 101);
    // Weights move it: beside ten 0s, the 100 goes with the 200 (450,000 against 400,909).
    EXPECT_EQ(otsu_threshold(values({{0, 10}, {100, 1}, {200, 1}})), 1);
    // Flat images: their only value, so that nothing is below it.
    EXPECT_EQ(otsu_threshold(torch::zeros({5, 5}, torch::kUInt8)), 0);
    EXPECT_EQ(otsu_threshold(torch::full({3, 7}, 128, torch::kUInt8)), 128);
    // Any shape, any dtype holding 8-bit values.
    const auto image = values({{30, 400}, {200, 600}}).view({20, 50});
    EXPECT_EQ(otsu_threshold(image), 31);
    EXPECT_EQ(otsu_threshold(image.to(torch::kFloat32)), 31);
}

// Moved from slide_test.cpp.
TEST(Tissue, TissueTilesOfTheAperioSlide) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    TissueMask tissue = tissue_mask_make(*slide, 1024);
    EXPECT_EQ(std::max(tissue.mask.size(0), tissue.mask.size(1)), 1024);
    const double fraction = tissue.mask.to(torch::kFloat).mean().item<double>();
    EXPECT_GT(fraction, 0.05);  // the region is mostly tissue with white gaps
    EXPECT_LT(fraction, 0.95);
    EXPECT_GT(tissue.threshold, 100);
    EXPECT_LT(tissue.threshold, 250);
    TileGrid all = tile_grid_full(*slide, 0, 256, 256);
    EXPECT_EQ(all.cols, 8);
    EXPECT_EQ(all.rows, 11);
    TileGrid some = tile_grid_tissue(*slide, tissue, 0, 256, 256, 0.01);
    EXPECT_GT(some.coords.size(0), 0);
    EXPECT_LE(some.coords.size(0), all.coords.size(0));
    // A stricter threshold keeps fewer tiles; every kept tile is on the grid.
    TileGrid strict = tile_grid_tissue(*slide, tissue, 0, 256, 256, 0.9);
    EXPECT_LT(strict.coords.size(0), some.coords.size(0));
    EXPECT_TRUE(some.coords.remainder(256).eq(0).all().item<bool>());
    auto overlay = tissue_overlay(*slide, tissue, some);
    EXPECT_EQ(overlay.sizes(), tissue.thumb.rgb.sizes());
}

TEST(Tissue, MaskIsTheDarkClassOfTheThumbnail) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    const TissueMask t = tissue_mask_make(*slide, 512);
    ASSERT_EQ(t.thumb.rgb.dim(), 3);
    EXPECT_EQ(t.mask.sizes(), t.thumb.rgb[0].sizes());
    EXPECT_EQ(t.mask.scalar_type(), torch::kBool);
    const auto grey = luma(t.thumb.rgb.to(torch::kFloat32)).round().clamp(0, 255).to(torch::kUInt8);
    EXPECT_EQ(t.threshold, otsu_threshold(grey));
    EXPECT_TRUE(torch::equal(t.mask, grey.lt(t.threshold)));
}

TEST(Tissue, GridFromDataOptionsOnTheAperioSlide) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    // Without tissue: the full grid of level 0 (2220 x 2967 pixels), row-major.
    TileGrid full = tile_grid_make(*slide, grid_options(256, 256));
    EXPECT_EQ(full.level, 0);
    EXPECT_EQ(full.patch, 256);
    EXPECT_EQ(full.cols, 8);
    EXPECT_EQ(full.rows, 11);
    ASSERT_EQ(full.coords.size(0), 88);
    EXPECT_TRUE(torch::equal(full.coords, tile_grid_full(*slide, 0, 256, 256).coords));
    EXPECT_EQ(full.coords[9][0].item<int64_t>(), 256);
    EXPECT_EQ(full.coords[9][1].item<int64_t>(), 256);
    // Overlapping stride.
    TileGrid half = tile_grid_make(*slide, grid_options(256, 128));
    EXPECT_EQ(half.cols, (2220 - 256) / 128 + 1);
    EXPECT_EQ(half.rows, (2967 - 256) / 128 + 1);
    EXPECT_EQ(half.coords.size(0), half.cols * half.rows);
    // An mpp the only level satisfies: level 0.
    DataOptions by_mpp = grid_options(256, 256);
    by_mpp.slide_mpp = 0.5;
    EXPECT_EQ(tile_grid_make(*slide, by_mpp).level, 0);
    // With tissue: exactly tile_grid_tissue on the default mask with tissue_min.
    DataOptions with_tissue = grid_options(256, 256);
    with_tissue.tissue = true;
    with_tissue.tissue_min = 0.5;
    TileGrid tissue = tile_grid_make(*slide, with_tissue);
    const TileGrid want = tile_grid_tissue(*slide, tissue_mask_make(*slide), 0, 256, 256, 0.5);
    EXPECT_TRUE(torch::equal(tissue.coords, want.coords));
    EXPECT_LT(tissue.coords.size(0), 88);
    EXPECT_GT(tissue.coords.size(0), 0);
    EXPECT_EQ(tissue.cols, 8);  // the full grid's geometry, for heat maps
    EXPECT_EQ(tissue.rows, 11);
}

TEST(Tissue, GridLevelFromMppOnAPyramid) {
    TempDir dir("ips_tissue_pyramid");
    const std::string tif = dir / "pyr.tif";
    pyramid_tiff_write(tif, 2048, 1536);  // 0.25 µm per pixel, levels 2x apart
    auto slide = slide_open(tif);
    ASSERT_GE(slide_levels(*slide).size(), 3u);
    DataOptions d = grid_options(128, 128);
    d.slide_mpp = 1.0;  // level 2 (downsample 4)
    TileGrid g = tile_grid_make(*slide, d);
    EXPECT_EQ(g.level, 2);
    EXPECT_EQ(g.cols, 512 / 128);
    EXPECT_EQ(g.rows, 384 / 128);
    EXPECT_EQ(g.coords[1][0].item<int64_t>(), 128 * 4);  // level-0 pixels
    d.slide_mpp = 0;
    d.slide_level = 1;
    EXPECT_EQ(tile_grid_make(*slide, d).level, 1);
}

// At slide_mpp, tiles cover patch_size pixels of that resolution: on a level of another
// resolution they are read larger and resized (a 40x slide read for 20x tiles), while a level off
// its nominal resolution by a few percent (the Aperio slide's 0.499 µm for 0.5) is read as it is.
TEST(Tissue, GridAtAnotherLevelsResolutionIsReadLargerAndResized) {
    TempDir dir("ips_tissue_mpp");
    const std::string tif = dir / "pyr.tif";
    pyramid_tiff_write(tif, 2048, 1536);  // 0.25 µm per pixel, levels 2x apart
    auto slide = slide_open(tif);
    DataOptions d = grid_options(128, 64);
    d.slide_mpp = 0.75;  // level 1 (0.5 µm): 1.5 of its pixels per pixel asked for
    TileGrid g = tile_grid_make(*slide, d);
    EXPECT_EQ(g.level, 1);
    EXPECT_EQ(g.patch, 192);
    EXPECT_EQ(g.stride, 96);
    EXPECT_EQ(g.out, 128);
    EXPECT_EQ(g.coords[1][0].item<int64_t>(), 96 * 2);  // level-0 pixels
    auto source = slide_source_make(slide, g);
    EXPECT_EQ(source->patch_shape(), (std::vector<int64_t>{3, 128, 128}));
    const auto x = g.coords[5][0].item<int64_t>(), y = g.coords[5][1].item<int64_t>();
    namespace F = torch::nn::functional;
    const auto region = slide_read_region(*slide, 1, x, y, 192, 192).to(torch::kFloat32).div(255).unsqueeze(0);
    const auto want = F::interpolate(region, F::InterpolateFuncOptions().size(std::vector<int64_t>{128, 128}).mode(torch::kArea));
    EXPECT_TRUE(torch::allclose(source->read(torch::tensor({5}, torch::kLong)), want, 0, 1e-6));
    d.slide_mpp = 0.5;  // level 1 exactly: read as it is
    g = tile_grid_make(*slide, d);
    EXPECT_EQ(g.level, 1);
    EXPECT_EQ(g.patch, 128);
    EXPECT_EQ(g.out, 0);

    REQUIRE_SVS();
    auto svs = slide_open(svs_path());  // 0.499 µm per pixel, one level
    DataOptions a = grid_options(256, 256);
    a.slide_mpp = 0.5;
    EXPECT_EQ(tile_grid_make(*svs, a).patch, 256);  // 0.2 % off: the nominal 20x
    EXPECT_EQ(tile_grid_make(*svs, a).out, 0);
    a.slide_mpp = 1.0;  // 10x from a 20x level: twice the side, halved
    const TileGrid half = tile_grid_make(*svs, a);
    EXPECT_EQ(half.patch, 512);
    EXPECT_EQ(half.out, 256);
    EXPECT_EQ(half.cols, 2220 / 512);
}

TEST(Tissue, GridErrorsNameTheKeyOrTheFile) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    DataOptions d = grid_options(256, 256);
    d.patch_size = {256, 128};
    std::string e = error_of([&] { tile_grid_make(*slide, d); });
    EXPECT_NE(e.find("'patch_size'"), std::string::npos) << e;
    d = grid_options(256, 256);
    d.slide_level = 2;
    e = error_of([&] { tile_grid_make(*slide, d); });
    EXPECT_NE(e.find("'slide_level'"), std::string::npos) << e;
    EXPECT_NE(e.find("1 level(s), not level 2"), std::string::npos) << e;
    EXPECT_THROW(tile_grid_make(*slide, d), ConfigError);

    // Moved from slide_test.cpp: a white image has no tissue, and the grid maker says so.
    TempDir dir("ips_tissue_white");
    const std::string white = dir / "white.png";
    vips_write(torch::full({3, 600, 600}, 250, torch::kUInt8), white);
    Config cfg;
    cfg.data.patch_size = cfg.data.patch_stride = {256, 256};
    cfg.data.tissue = true;
    auto ws = slide_open(white);
    e = error_of([&] { tile_grid_make(*ws, cfg.data); });
    EXPECT_NE(e.find("white.png"), std::string::npos) << e;
    EXPECT_NE(e.find("no tile has tissue"), std::string::npos) << e;
}
