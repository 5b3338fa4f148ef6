#include <gtest/gtest.h>

#include "ips/patch_source.h"

using namespace ips;
using torch::indexing::Slice;

TEST(PatchSource, GridShapeWithOverlappingStrides) {
    EXPECT_EQ(grid_shape(1500, 1500, {50, 50}, {50, 50}), (std::array<int64_t, 2>{30, 30}));
    EXPECT_EQ(grid_shape(1500, 1500, {50, 50}, {25, 25}), (std::array<int64_t, 2>{59, 59}));
    EXPECT_EQ(grid_shape(1200, 1600, {100, 100}, {100, 100}), (std::array<int64_t, 2>{12, 16}));
    EXPECT_EQ(grid_shape(10, 7, {4, 3}, {3, 2}), (std::array<int64_t, 2>{3, 3}));  // leftover border dropped
    EXPECT_THROW(grid_shape(40, 40, {50, 50}, {50, 50}), std::invalid_argument);
}

TEST(PatchSource, ImagePatchesEqualCropsOfTheImage) {
    auto image = torch::randint(0, 256, {3, 23, 31}, torch::kUInt8);
    const std::array<int64_t, 2> patch{6, 8}, stride{4, 5};
    auto src = image_grid_source_make(image, patch, stride);
    auto grid = grid_shape(23, 31, patch, stride);
    ASSERT_EQ(src->size(), grid[0] * grid[1]);
    EXPECT_EQ(src->grid_cols(), grid[1]);
    EXPECT_EQ(src->patch_shape(), (std::vector<int64_t>{3, 6, 8}));
    auto idx = torch::tensor({int64_t{0}, int64_t{1}, grid[1], src->size() - 1, int64_t{7}, int64_t{7}}, torch::kLong);
    auto got = src->read(idx);  // [6, 3, 6, 8] float in [0, 1]
    for (int64_t k = 0; k < idx.size(0); ++k) {
        const int64_t n = idx[k].item<int64_t>(), row = n / grid[1], col = n % grid[1];
        auto crop = image.index({Slice(), Slice(row * stride[0], row * stride[0] + patch[0]),
                                 Slice(col * stride[1], col * stride[1] + patch[1])});
        EXPECT_TRUE(torch::allclose(got[k], crop.to(torch::kFloat32) / 255.0)) << "patch " << n;
        auto origin = src->patch_origin(n);
        EXPECT_EQ(origin[0], col * stride[1]);
        EXPECT_EQ(origin[1], row * stride[0]);
    }
    EXPECT_TRUE(torch::equal(src->read_range(2, 3), src->read(torch::arange(2, 5))));
    EXPECT_THROW(src->read(torch::tensor({src->size()}, torch::kLong)), std::out_of_range);
}

TEST(PatchSource, NormalisationAndMovingKeepValues) {
    auto image = torch::full({3, 8, 8}, 255, torch::kUInt8);
    auto src = image_grid_source_make(image, {4, 4}, {4, 4}, normalization_from_name("imagenet"));
    auto p = src->read(torch::tensor({0}, torch::kLong));
    EXPECT_NEAR(p[0][0][0][0].item<float>(), (1.0 - 0.485) / 0.229, 1e-5);
    EXPECT_NEAR(p[0][2][3][3].item<float>(), (1.0 - 0.406) / 0.225, 1e-5);
    auto moved = src->to(torch::kCPU);
    EXPECT_TRUE(torch::equal(moved->read(torch::arange(4)), src->read(torch::arange(4))));
    EXPECT_THROW(normalization_from_name("zscore"), std::invalid_argument);

    auto bag = torch::randn({10, 5});
    auto t = tensor_source_make(bag);
    EXPECT_EQ(t->size(), 10);
    EXPECT_TRUE(torch::equal(t->read(torch::tensor({3, 1}, torch::kLong)), bag.index_select(0, torch::tensor({3, 1}))));
}
