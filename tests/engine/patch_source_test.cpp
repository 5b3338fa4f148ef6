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

// Selection copies patches as stored and finishes them on the compute device: for every kind of
// source, stored_to_float(read_stored) must be read(), and read_range_stored must match read_range.
TEST(PatchSource, StoredReadsFinishToTheSamePatches) {
    auto image = torch::randint(0, 256, {3, 40, 60}, torch::kUInt8);
    std::vector<std::pair<std::string, PatchSourcePtr>> sources = {
        {"uint8 tensor", tensor_source_make(torch::randint(0, 256, {30, 1, 5, 5}, torch::kUInt8))},
        {"float16 tensor", tensor_source_make(torch::randn({30, 9}).to(torch::kHalf))},
        {"float32 tensor", tensor_source_make(torch::randn({30, 9}))},
        {"image grid, ImageNet normalisation",
         image_grid_source_make(image, {10, 10}, {10, 10}, normalization_of(Normalize::imagenet))},
        {"image grid, overlapping", image_grid_source_make(image, {16, 16}, {8, 8})},
    };
    for (auto& [name, src] : sources) {
        auto idx = torch::tensor({int64_t{3}, int64_t{0}, int64_t{17}, int64_t{3}}, torch::kLong);
        auto stored = src->read_stored(idx);
        EXPECT_NE(stored.scalar_type(), name.find("float32") == std::string::npos ? torch::kFloat32 : torch::kHalf)
            << name << ": stored patches should keep their compact dtype";
        EXPECT_TRUE(torch::equal(src->stored_to_float(stored), src->read(idx))) << name;
        EXPECT_TRUE(torch::equal(src->stored_to_float(src->read_range_stored(4, 6)), src->read_range(4, 6))) << name;
    }
}

TEST(PatchSource, NormalisationAndMovingKeepValues) {
    auto image = torch::full({3, 8, 8}, 255, torch::kUInt8);
    auto src = image_grid_source_make(image, {4, 4}, {4, 4}, normalization_of(Normalize::imagenet));
    auto p = src->read(torch::tensor({0}, torch::kLong));
    EXPECT_NEAR(p[0][0][0][0].item<float>(), (1.0 - 0.485) / 0.229, 1e-5);
    EXPECT_NEAR(p[0][2][3][3].item<float>(), (1.0 - 0.406) / 0.225, 1e-5);
    auto moved = src->to(torch::kCPU);
    EXPECT_TRUE(torch::equal(moved->read(torch::arange(4)), src->read(torch::arange(4))));
    EXPECT_TRUE(normalization_of(Normalize::none).mean.empty());

    auto bag = torch::randn({10, 5});
    auto t = tensor_source_make(bag);
    EXPECT_EQ(t->size(), 10);
    EXPECT_TRUE(torch::equal(t->read(torch::tensor({3, 1}, torch::kLong)), bag.index_select(0, torch::tensor({3, 1}))));
}
