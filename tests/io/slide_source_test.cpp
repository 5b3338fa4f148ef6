// The patch source over a slide's tiles: patches read on demand from the real Aperio slide and
// from pyramids libvips wrote equal the same pixels of a region read or a whole-image decode,
// scaled, made grey, resized and normalised as asked.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_support.h"
#include "io/test_images.h"
#include "ips/image_io.h"
#include "ips/slide.h"
#include "ips/slide_source.h"

namespace fs = std::filesystem;
using namespace ips;
using namespace ips::test;

TEST(SlideSource, AperioTilesAreTheRegionsScaledToOne) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    const TileGrid grid = tile_grid_full(*slide, 0, 256, 256);  // 8 x 11 tiles of 2220 x 2967
    auto source = slide_source_make(slide, grid);
    ASSERT_EQ(source->size(), 88);
    EXPECT_EQ(source->grid_cols(), 8);
    EXPECT_EQ(source->patch_shape(), (std::vector<int64_t>{3, 256, 256}));
    EXPECT_EQ(source->device(), torch::Device(torch::kCPU));
    const auto idx = torch::tensor({0, 9, 87, 9}, torch::kLong);  // repeats allowed
    const auto got = source->read(idx);
    ASSERT_EQ(got.sizes(), (std::vector<int64_t>{4, 3, 256, 256}));
    EXPECT_EQ(got.scalar_type(), torch::kFloat32);
    for (int64_t k = 0; k < idx.size(0); ++k) {
        const int64_t n = idx[k].item<int64_t>();
        const auto origin = source->patch_origin(n);
        EXPECT_EQ(origin[0], (n % 8) * 256);
        EXPECT_EQ(origin[1], (n / 8) * 256);
        const auto region = slide_read_region(*slide, 0, origin[0], origin[1], 256, 256);
        EXPECT_TRUE(torch::allclose(got[k], region.to(torch::kFloat32) / 255.0, 0, 1e-6)) << "tile " << n;
    }
    EXPECT_GT(got.std().item<float>(), 0.01f);  // tissue, not a blank
    // A file cannot move: the source stays where it is; the caller copies chunks.
    EXPECT_EQ(source->to(torch::kCPU).get(), source.get());
    EXPECT_THROW(source->read(torch::tensor({88}, torch::kLong)), std::out_of_range);
    EXPECT_THROW(source->read(torch::tensor({-1}, torch::kLong)), std::out_of_range);
}

TEST(SlideSource, GreyResizedAndNormalisedPatches) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    const TileGrid grid = tile_grid_full(*slide, 0, 256, 256);
    const auto idx = torch::tensor({12, 40}, torch::kLong);
    const auto rgb = slide_source_make(slide, grid)->read(idx);  // [2, 3, 256, 256] in [0, 1]

    // Grey: ITU-R 601 luma of the RGB patch.
    const auto grey = slide_source_make(slide, grid, 1)->read(idx);
    ASSERT_EQ(grey.sizes(), (std::vector<int64_t>{2, 1, 256, 256}));
    for (int64_t k = 0; k < 2; ++k) EXPECT_TRUE(torch::allclose(grey[k][0], luma(rgb[k]), 0, 1e-6));

    // Shrunk to 64: area averaging, i.e. the mean of each 4 x 4 block.
    auto small = slide_source_make(slide, grid, 3, {}, 64);
    EXPECT_EQ(small->patch_shape(), (std::vector<int64_t>{3, 64, 64}));
    EXPECT_TRUE(torch::allclose(small->read(idx), torch::avg_pool2d(rgb, 4), 0, 1e-5));
    // Grown to 512: bilinear, so no value outside the tile's range and the same mean.
    const auto big = slide_source_make(slide, grid, 3, {}, 512)->read(idx);
    EXPECT_EQ(big.sizes(), (std::vector<int64_t>{2, 3, 512, 512}));
    EXPECT_GE(big.min().item<float>(), rgb.min().item<float>() - 1e-6f);
    EXPECT_LE(big.max().item<float>(), rgb.max().item<float>() + 1e-6f);
    EXPECT_NEAR(big.mean().item<double>(), rgb.mean().item<double>(), 2e-3);

    // ImageNet normalisation after scaling.
    const auto norm = normalization_of(Normalize::imagenet);
    const auto normalised = slide_source_make(slide, grid, 3, norm)->read(idx);
    const auto mean = torch::tensor(norm.mean).view({1, 3, 1, 1}), std = torch::tensor(norm.std).view({1, 3, 1, 1});
    EXPECT_TRUE(torch::allclose(normalised, (rgb - mean) / std, 0, 1e-5));
}

// RGB tiles at their own size are stored as the slide gives them, uint8 (a quarter of the bytes to
// copy to a device); finishing them gives read() exactly. Grey and resized tiles are stored as float.
TEST(SlideSource, RgbTilesAreStoredAsBytesAndFinishAsRead) {
    REQUIRE_SVS();
    auto slide = slide_open(svs_path());
    const TileGrid grid = tile_grid_full(*slide, 0, 256, 256);
    const auto idx = torch::tensor({3, 50, 3}, torch::kLong);
    auto source = slide_source_make(slide, grid, 3, normalization_of(Normalize::imagenet));
    const auto stored = source->read_stored(idx);
    ASSERT_EQ(stored.scalar_type(), torch::kByte);
    for (int64_t k = 0; k < 3; ++k) {
        const auto origin = source->patch_origin(idx[k].item<int64_t>());
        EXPECT_TRUE(torch::equal(stored[k], slide_read_region(*slide, 0, origin[0], origin[1], 256, 256)));
    }
    EXPECT_TRUE(torch::equal(source->stored_to_float(stored), source->read(idx)));
    EXPECT_TRUE(torch::equal(source->read_range_stored(3, 2), source->read_stored(torch::tensor({3, 4}, torch::kLong))));
    EXPECT_EQ(slide_source_make(slide, grid, 1)->read_stored(idx).scalar_type(), torch::kFloat32);
    EXPECT_EQ(slide_source_make(slide, grid, 3, {}, 64)->read_stored(idx).scalar_type(), torch::kFloat32);
}

TEST(SlideSource, BadSettingsAreRefused) {
    TempDir dir("ips_slide_source_bad");
    vips_write(pattern_image(64, 64), dir / "a.png");
    auto slide = slide_open(dir / "a.png");
    const TileGrid grid = tile_grid_full(*slide, 0, 32, 32);
    std::string e = error_of([&] { slide_source_make(slide, grid, 2); });
    EXPECT_NE(e.find("1 or 3 channels, not 2"), std::string::npos) << e;
    e = error_of([&] { slide_source_make(slide, grid, 1, normalization_of(Normalize::imagenet)); });
    EXPECT_NE(e.find("normalisation has 3 channels, the patches 1"), std::string::npos) << e;
    TileGrid no_coords = grid;
    no_coords.coords = torch::zeros({4}, torch::kLong);
    e = error_of([&] { slide_source_make(slide, no_coords); });
    EXPECT_NE(e.find("coords [N, 2]"), std::string::npos) << e;
}

// Moved from slide_test.cpp: lazy patches of a lossless pyramid are exactly the patches of the
// whole decode, also grey and resized.
TEST(SlideSource, LazyPatchesEqualTheWholeDecode) {
    TempDir dir("ips_slide_source");
    const auto [image, tif] = pattern_pyramid_write(dir);
    auto slide = slide_open(tif);
    TileGrid grid = tile_grid_full(*slide, 0, 100, 100);
    auto lazy = slide_source_make(slide, grid, 3, normalization_of(Normalize::imagenet));
    auto eager = image_grid_source_make(image_read(tif, 3), {100, 100}, {100, 100}, normalization_of(Normalize::imagenet));
    ASSERT_EQ(lazy->size(), eager->size());
    ASSERT_EQ(lazy->size(), 11 * 17);
    auto idx = torch::tensor({0, 5, 16, 17, 100, 186, 3}, torch::kLong);
    EXPECT_TRUE(torch::allclose(lazy->read(idx), eager->read(idx), 0, 1e-6));
    EXPECT_EQ(lazy->patch_origin(18)[0], 100);
    EXPECT_EQ(lazy->patch_origin(18)[1], 100);
    // Resized, grey patches.
    auto small = slide_source_make(slide, grid, 1, {}, 50);
    EXPECT_EQ(small->read(idx).sizes(), (std::vector<int64_t>{7, 1, 50, 50}));
    EXPECT_THROW(lazy->read(torch::tensor({187}, torch::kLong)), std::out_of_range);
    // A coarser level: tiles of the level-2 image, at level-0 coordinates.
    TileGrid coarse = tile_grid_full(*slide, 2, 50, 50);
    auto l2 = slide_source_make(slide, coarse);
    EXPECT_EQ(l2->size(), (275 / 50) * (425 / 50));
    EXPECT_EQ(l2->patch_origin(1)[0], 200);
    const auto region = slide_read_region(*slide, 2, 200, 0, 50, 50).to(torch::kFloat32) / 255.0;
    EXPECT_TRUE(torch::allclose(l2->read(torch::tensor({1}, torch::kLong))[0], region, 0, 1e-6));
}
