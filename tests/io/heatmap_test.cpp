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

// The mean colour of a region [3] of a rendered picture.
std::vector<double> mean_rgb(const torch::Tensor& pic, int64_t x0, int64_t y0, int64_t x1, int64_t y1) {
    const auto r = pic.index({Slice(), Slice(y0, y1), Slice(x0, x1)}).to(torch::kFloat64).mean({1, 2});
    return {r[0].item<double>(), r[1].item<double>(), r[2].item<double>()};
}

}  // namespace

TEST(Heatmap, TheColourRampRunsFromBlueThroughGreenToRed) {
    const auto c = score_colours(torch::tensor({0.0, 0.5, 1.0, -3.0, 7.0}));  // [3, 5]
    ASSERT_EQ(c.sizes(), (std::vector<int64_t>{3, 5}));
    auto at = [&](int64_t k) { return std::vector<float>{c[0][k].item<float>(), c[1][k].item<float>(), c[2][k].item<float>()}; };
    EXPECT_EQ(at(0), (std::vector<float>{0, 0, 127.5f}));
    EXPECT_EQ(at(1), (std::vector<float>{127.5f, 255, 127.5f}));
    EXPECT_EQ(at(2), (std::vector<float>{127.5f, 0, 0}));
    EXPECT_EQ(at(3), at(0));  // clamped to the scale
    EXPECT_EQ(at(4), at(2));
}

TEST(Heatmap, EachCellIsColouredByItsScoreOverTheThumbnailWithALegend) {
    // A grey 80 x 120 thumbnail, cells of 40 x 40: two rows of three, one cell without a patch.
    const auto thumb = torch::full({3, 80, 120}, 128, torch::kUInt8);
    const auto cells = torch::tensor({{0.05f, 0.3f, NAN}, {0.9f, 0.6f, 0.0f}});
    const auto out = heatmap_thumbnail_render(thumb, cells, 40, 40, {}, 0.9, "score");
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{3, 240, 120 + 130}));  // tall enough for the legend
    EXPECT_EQ(out.scalar_type(), torch::kUInt8);
    // The top cell (t = 1): red (127.5, 0, 0) at opacity 0.75 over grey 128.
    EXPECT_EQ(mean_rgb(out, 0, 40, 40, 80), (std::vector<double>{127, 32, 32}));
    // The lowest scored cells are blue, faintly: opacity 0.15 + 0.6 t.
    const auto low = mean_rgb(out, 0, 0, 40, 40);
    EXPECT_GT(low[2], low[0] + 10);
    const auto zero = mean_rgb(out, 80, 40, 120, 80);  // t = 0: (0, 0, 127.5) at 0.15
    EXPECT_EQ(zero, (std::vector<double>{108, 108, 127}));
    // No patch: the thumbnail as it was. Below the thumbnail and in the legend's margin: white.
    EXPECT_EQ(mean_rgb(out, 80, 0, 120, 40), (std::vector<double>{128, 128, 128}));
    EXPECT_EQ(mean_rgb(out, 0, 100, 120, 240), (std::vector<double>{255, 255, 255}));
    // Scores count against the top of the scale: scaling both changes the picture's colours not at
    // all (the legend's numbers do change).
    const auto picture = [](const torch::Tensor& t) { return t.index({Slice(), Slice(0, 80), Slice(0, 120)}); };
    EXPECT_TRUE(torch::equal(picture(heatmap_thumbnail_render(thumb, cells * 2, 40, 40, {}, 1.8, "score")), picture(out)));
    // Cells beyond the thumbnail are cut off, not an error.
    EXPECT_EQ(heatmap_thumbnail_render(thumb, cells, 70, 70, {}, 0.9, "score").sizes(), out.sizes());
    EXPECT_THROW(heatmap_thumbnail_render(torch::zeros({1, 4, 4}, torch::kUInt8), cells, 1, 1, {}, 1, ""), std::exception);
}

TEST(Heatmap, KeptPatchesAreOutlinedInBlack) {
    const auto thumb = torch::full({3, 80, 120}, 200, torch::kUInt8);
    const auto cells = torch::full({2, 3}, 0.5f);
    const auto out = heatmap_thumbnail_render(thumb, cells, 40, 40, {ScoredBox{40, 0, 40, 40, 0.5, true}}, 1.0, "s");
    EXPECT_EQ(mean_rgb(out, 40, 0, 80, 1), (std::vector<double>{0, 0, 0}));    // the top edge
    EXPECT_EQ(mean_rgb(out, 79, 0, 80, 40), (std::vector<double>{0, 0, 0}));   // the right edge
    EXPECT_NE(mean_rgb(out, 50, 10, 70, 30), (std::vector<double>{0, 0, 0}));  // not its inside
    EXPECT_NE(mean_rgb(out, 0, 0, 1, 40), (std::vector<double>{0, 0, 0}));     // nor other cells
}

TEST(Heatmap, TheGalleryShowsEachPatchWithItsCaption) {
    std::vector<torch::Tensor> patches;
    std::vector<std::string> captions;
    for (int k = 0; k < 5; ++k) {
        patches.push_back(torch::full({3, 64, 64}, 40 * k, torch::kUInt8));
        captions.push_back("#" + std::to_string(k + 1));
    }
    const auto g = gallery_render(patches, captions, 100, 4);
    // 4 columns, 2 rows of 100 + caption 22 + padding 8.
    ASSERT_EQ(g.sizes(), (std::vector<int64_t>{3, 8 + 2 * (100 + 22 + 8), 8 + 4 * (100 + 8)}));
    EXPECT_EQ(mean_rgb(g, 8 + 108 * 2 + 10, 18, 8 + 108 * 2 + 90, 98), (std::vector<double>{80, 80, 80}));  // the third
    EXPECT_EQ(mean_rgb(g, 8 + 10, 8 + 130 + 10, 8 + 90, 8 + 130 + 90), (std::vector<double>{160, 160, 160}));  // the fifth
    EXPECT_THROW(gallery_render(patches, {"one"}), std::exception);
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

TEST(Heatmap, CurveRenderMarksEpochsAndChanceLevels) {
    // Three epochs at 0.9 with chance at 0.1: the plot area is x in [70, 570], y in [40, 430], so
    // chance sits at y = 430 - 0.1 * 390 = 391, drawn as dashes 6 px on, 6 off, from x = 72 in the
    // series' colour (blue) at 35 % over white; epoch ticks hang below the x axis at 70, 320, 570.
    Series s{"majority accuracy", {0.9, 0.9, 0.9}};
    s.chance = 0.1;
    const auto img = curve_render({s}, "acc");
    auto pixel = [&](int64_t x, int64_t y) {
        return std::vector<int64_t>{img[0][y][x].item<int64_t>(), img[1][y][x].item<int64_t>(), img[2][y][x].item<int64_t>()};
    };
    const std::vector<int64_t> faint_blue{165, 165, 210}, white{255, 255, 255}, ink{60, 60, 60};
    EXPECT_EQ(pixel(74, 391), faint_blue);
    EXPECT_EQ(pixel(80, 391), white);  // the gap of the dash
    EXPECT_EQ(pixel(302, 391), faint_blue);
    EXPECT_EQ(pixel(320, 434), ink);   // the tick of epoch 2
    EXPECT_EQ(pixel(200, 434), white);
    // Without a chance level nothing is drawn there.
    const auto none = curve_render({{"majority accuracy", {0.9, 0.9, 0.9}}}, "acc");
    EXPECT_EQ(none[2][391][74].item<int64_t>(), 255);
}
