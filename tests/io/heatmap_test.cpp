// Pictures: attention heat maps over an image (the most attended patch in red, the least in blue)
// and learning curves, checked pixel by pixel where the drawing rules fix the colour.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "test_support.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"

using namespace ips;
using torch::indexing::Slice;

namespace {

// The box's inside, without its outline: [3, h, w] float.
torch::Tensor inside(const torch::Tensor& canvas, const PatchBox& b) {
    return canvas.index({Slice(), Slice(b.y + 2, b.y + b.h - 2), Slice(b.x + 2, b.x + b.w - 2)}).to(torch::kFloat32);
}

// How far red stands above the other two channels, on average over the box's inside.
double redness(const torch::Tensor& canvas, const PatchBox& b) {
    const auto c = inside(canvas, b);
    return (c[0] - torch::max(c[1], c[2])).mean().item<double>();
}

}  // namespace

TEST(Heatmap, ShapeDtypeAndDimmedImage) {
    const auto grey = torch::full({1, 40, 60}, 200, torch::kUInt8);
    const auto out = heatmap_render(grey, {});
    EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, 40, 60}));
    EXPECT_EQ(out.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(out.eq(160).all().item<bool>());  // grey repeated to RGB, dimmed to 80 %

    auto rgb = torch::zeros({3, 40, 60}, torch::kUInt8);
    rgb[0].fill_(250);
    rgb[2].fill_(100);
    const auto rgb_out = heatmap_render(rgb, {});
    EXPECT_TRUE(rgb_out[0].eq(200).all().item<bool>());
    EXPECT_TRUE(rgb_out[1].eq(0).all().item<bool>());
    EXPECT_TRUE(rgb_out[2].eq(80).all().item<bool>());
    // The input is left as it was.
    EXPECT_TRUE(rgb[0].eq(250).all().item<bool>());
    EXPECT_THROW(heatmap_render(torch::zeros({2, 4, 4}, torch::kUInt8), {}), std::exception);
    EXPECT_THROW(heatmap_render(torch::zeros({4, 4}, torch::kUInt8), {}), std::exception);
}

TEST(Heatmap, TheMostAttendedBoxIsTheReddest) {
    const auto image = torch::full({1, 100, 160}, 128, torch::kUInt8);
    const std::vector<PatchBox> boxes = {
        {0, 0, 40, 40, 0.05},    // least attended
        {40, 0, 40, 40, 0.3},
        {80, 50, 40, 40, 0.9},   // most attended
        {120, 50, 40, 40, 0.6},
    };
    const auto out = heatmap_render(image, boxes);
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{3, 100, 160}));
    std::vector<double> red;
    for (const auto& b : boxes) red.push_back(redness(out, b));
    EXPECT_EQ(std::max_element(red.begin(), red.end()) - red.begin(), 2);
    EXPECT_GT(red[2], 20);
    // The top box is pure red over the dimmed grey (102.4): red up, green and blue down alike.
    const auto top = inside(out, boxes[2]), low = inside(out, boxes[0]);
    EXPECT_GT(top[0].mean().item<double>(), 105);
    EXPECT_LT(top[2].mean().item<double>(), 80);
    EXPECT_NEAR(top[1].mean().item<double>(), top[2].mean().item<double>(), 1);
    // The least attended box is blue.
    EXPECT_GT(low[2].mean().item<double>(), low[0].mean().item<double>() + 30);
    EXPECT_GT(low[2].mean().item<double>(), low[1].mean().item<double>() + 30);
    // Outside every box the image is only dimmed.
    EXPECT_TRUE(out.index({Slice(), Slice(60, 100), Slice(0, 60)}).eq(102).all().item<bool>());
    // Scores count relative to the largest: scaling all of them changes nothing.
    std::vector<PatchBox> scaled = boxes;
    for (auto& b : scaled) b.score *= 2;
    EXPECT_TRUE(torch::equal(heatmap_render(image, scaled), out));
}

TEST(Heatmap, OverlapsShowTheMostAttendedOnTopAndBoxesAreClipped) {
    const auto image = torch::full({3, 64, 64}, 128, torch::kUInt8);
    const PatchBox low{0, 0, 48, 48, 0.1}, high{16, 16, 48, 48, 1.0};
    const auto a = heatmap_render(image, {high, low}), b = heatmap_render(image, {low, high});
    EXPECT_TRUE(torch::equal(a, b));  // the order given does not matter
    // Where they overlap, the high box is painted over the low one: redder, less blue than the low
    // box where the high one lies elsewhere.
    const auto only_low = heatmap_render(image, {low, PatchBox{100, 100, 8, 8, 1.0}});
    const auto overlap = a.index({Slice(), Slice(30, 40), Slice(30, 40)}).to(torch::kFloat32);
    const auto under = only_low.index({Slice(), Slice(30, 40), Slice(30, 40)}).to(torch::kFloat32);
    EXPECT_GT(overlap[0].mean().item<double>(), under[0].mean().item<double>() + 10);
    EXPECT_LT(overlap[2].mean().item<double>(), under[2].mean().item<double>() - 10);
    // A box partly or wholly outside the image is clipped, not an error.
    const auto clipped = heatmap_render(image, {PatchBox{50, 50, 40, 40, 1.0}, PatchBox{200, 200, 10, 10, 0.5}});
    EXPECT_EQ(clipped.sizes(), image.sizes());
    EXPECT_TRUE(clipped.index({Slice(), Slice(0, 50), Slice(0, 50)}).eq(102).all().item<bool>());
    // All scores zero: every box in the low colour.
    const auto zero = heatmap_render(image, {PatchBox{0, 0, 20, 20, 0.0}});
    EXPECT_GT(inside(zero, {0, 0, 20, 20, 0})[2].mean().item<double>(), inside(zero, {0, 0, 20, 20, 0})[0].mean().item<double>());
}

TEST(Heatmap, CurveRenderShapeAndSeriesPoints) {
    const auto plain = curve_render({{"loss", {0.9, 0.5, 0.3}}}, "loss");
    EXPECT_EQ(plain.sizes(), (std::vector<int64_t>{3, 480, 800}));
    EXPECT_EQ(plain.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(plain.index({Slice(), 479, 799}).eq(255).all().item<bool>());  // white margin

    // Two series over 5 epochs, one rising from 0 to 1, one falling: the plot area is x in
    // [70, 570], y in [40, 430] (800 x 480 less the margins), 0 at the bottom; the first series
    // is blue (0, 0, 127), the last red (127, 0, 0).
    const auto two = curve_render({{"train", {0, 0.25, 0.5, 0.75, 1}}, {"test", {1, 0.75, 0.5, 0.25, 0}}}, "acc");
    auto pixel = [&](int64_t x, int64_t y) {
        return std::vector<int64_t>{two[0][y][x].item<int64_t>(), two[1][y][x].item<int64_t>(), two[2][y][x].item<int64_t>()};
    };
    const std::vector<int64_t> blue{0, 0, 127}, red{127, 0, 0};
    EXPECT_EQ(pixel(71, 429), blue);   // train's first point (0): bottom left
    EXPECT_EQ(pixel(195, 332), blue);  // train at the second epoch: 0.25 of the height up
    EXPECT_EQ(pixel(570, 40), blue);   // train's last point (1): top right
    EXPECT_EQ(pixel(71, 41), red);     // test's first point (1): top left
    EXPECT_EQ(pixel(570, 430), red);   // test's last point (0): bottom right
    EXPECT_EQ(pixel(320, 235), red);   // both at 0.5 in the middle: the later series on top

    const auto custom = curve_render({{"a", {1, 2}}}, "t", 640, 360);
    EXPECT_EQ(custom.sizes(), (std::vector<int64_t>{3, 360, 640}));
    // No data: axes only, no failure; non-finite values are left out.
    EXPECT_EQ(curve_render({}, "empty").sizes(), (std::vector<int64_t>{3, 480, 800}));
    EXPECT_EQ(curve_render({{"nan", {std::nan(""), 0.5}}}, "gaps").sizes(), (std::vector<int64_t>{3, 480, 800}));
}
