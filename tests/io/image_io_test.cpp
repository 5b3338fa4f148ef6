// Whole images through libvips: PNG and JPEG files, grey and RGB, 8 and 16 bits, with alpha,
// written by png_write or by libvips itself and read back by image_read; broken files named;
// resizing as torchvision's Resize on tensors; ITU-R 601 luma.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "io/test_images.h"
#include "ips/image_io.h"

namespace fs = std::filesystem;
using namespace ips;
using namespace ips::test;

namespace {

// A smooth RGB image: what JPEG keeps well.
torch::Tensor smooth_image(int64_t H, int64_t W) {
    auto y = torch::linspace(0, 1, H).view({H, 1}), x = torch::linspace(0, 1, W).view({1, W});
    auto r = (x * 200 + 30).expand({H, W});
    auto g = (y * 180 + 50).expand({H, W});
    auto b = (torch::sin(x * 3.14159) * torch::cos(y * 3.14159) * 100 + 120);
    return torch::stack({r, g, b}).round().clamp(0, 255).to(torch::kUInt8);
}

int max_diff(const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kInt) - b.to(torch::kInt)).abs().max().item<int>();
}

double mean_diff(const torch::Tensor& a, const torch::Tensor& b) {
    return (a.to(torch::kFloat) - b.to(torch::kFloat)).abs().mean().item<double>();
}

}  // namespace

TEST(ImageIo, PngGreyAndRgbRoundTrip) {
    TempDir dir("ips_image_io_png");
    const auto rgb = pattern_image(45, 70);
    const auto grey = rgb.slice(0, 1, 2).contiguous();  // [1, H, W]
    png_write(dir / "grey.png", grey);
    png_write(dir / "rgb.png", rgb);
    png_write(dir / "rgb9.png", rgb, 9);
    EXPECT_FALSE(fs::exists(dir / "grey.png.tmp.png"));

    const auto g1 = image_read(dir / "grey.png", 1);
    EXPECT_EQ(g1.sizes(), (std::vector<int64_t>{1, 45, 70}));
    EXPECT_EQ(g1.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(g1.is_contiguous());
    EXPECT_TRUE(torch::equal(g1, grey));
    // Grey read as RGB: the grey repeated.
    const auto g3 = image_read(dir / "grey.png", 3);
    EXPECT_EQ(g3.sizes(), (std::vector<int64_t>{3, 45, 70}));
    for (int c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(g3[c], grey[0])) << c;

    EXPECT_TRUE(torch::equal(image_read(dir / "rgb.png", 3), rgb));
    EXPECT_TRUE(torch::equal(image_read(dir / "rgb9.png", 3), rgb));  // compression changes bytes only
    EXPECT_LT(fs::file_size(dir / "rgb9.png"), fs::file_size(dir / "rgb.png") + 1);
}

TEST(ImageIo, RgbReadAsGreyFollowsBrightness) {
    TempDir dir("ips_image_io_grey");
    // Grey pixels stay their value; pure colours get their brightness: green > red > blue.
    auto rgb = torch::zeros({3, 4, 4}, torch::kUInt8);
    rgb.slice(2, 0, 1).fill_(90);                          // column 0: grey 90
    rgb.slice(2, 1, 2).fill_(200);                         // column 1: grey 200
    rgb[0].slice(1, 2, 3).fill_(255);                      // column 2: red
    rgb[1].slice(1, 3, 4).slice(0, 0, 2).fill_(255);       // column 3, top: green
    rgb[2].slice(1, 3, 4).slice(0, 2, 4).fill_(255);       // column 3, bottom: blue
    vips_write(rgb, dir / "colours.png");
    const auto grey = image_read(dir / "colours.png", 1)[0].to(torch::kInt);  // [4, 4]
    EXPECT_LE(std::abs(grey[0][0].item<int>() - 90), 1);
    EXPECT_LE(std::abs(grey[0][1].item<int>() - 200), 1);
    const int red = grey[0][2].item<int>(), green = grey[0][3].item<int>(), blue = grey[3][3].item<int>();
    EXPECT_GT(green, red);
    EXPECT_GT(red, blue);
    EXPECT_GT(blue, 0);
    EXPECT_LT(green, 255);
}

TEST(ImageIo, JpegGreyAndRgbWrittenByLibvips) {
    TempDir dir("ips_image_io_jpeg");
    const auto rgb = smooth_image(120, 160);
    vips_write(rgb, dir / "rgb.jpg[Q=95]");
    vips_write(rgb.slice(0, 1, 2).contiguous(), dir / "grey.jpeg[Q=95]");
    const auto got = image_read(dir / "rgb.jpg", 3);
    ASSERT_EQ(got.sizes(), rgb.sizes());
    EXPECT_LT(mean_diff(got, rgb), 2.0);
    EXPECT_LE(max_diff(got, rgb), 12);
    const auto grey = image_read(dir / "grey.jpeg", 1);
    ASSERT_EQ(grey.sizes(), (std::vector<int64_t>{1, 120, 160}));
    EXPECT_LT(mean_diff(grey, rgb.slice(0, 1, 2)), 1.0);
    // The same file decodes to the same pixels every time.
    EXPECT_TRUE(torch::equal(image_read(dir / "rgb.jpg", 3), got));
}

TEST(ImageIo, AlphaIsFlattenedOnWhite) {
    TempDir dir("ips_image_io_alpha");
    const auto rgb = pattern_image(32, 48);
    auto alpha = torch::full({1, 32, 48}, 255, torch::kUInt8);
    alpha.slice(2, 24).fill_(0);                  // right half transparent
    alpha.slice(1, 16).slice(2, 0, 24).fill_(128);  // bottom left half-transparent
    vips_write(torch::cat({rgb, alpha}), dir / "rgba.png");
    const auto got = image_read(dir / "rgba.png", 3);
    ASSERT_EQ(got.sizes(), rgb.sizes());
    EXPECT_TRUE(torch::equal(got.slice(1, 0, 16).slice(2, 0, 24), rgb.slice(1, 0, 16).slice(2, 0, 24)));
    EXPECT_TRUE(got.slice(2, 24).eq(255).all().item<bool>());
    const auto half = (rgb.slice(1, 16).slice(2, 0, 24).to(torch::kInt) * 128 + 255 * 127 + 127) / 255;
    EXPECT_LE(max_diff(got.slice(1, 16).slice(2, 0, 24), half), 1);

    // Grey with alpha, read as grey.
    const auto g = rgb.slice(0, 0, 1).contiguous();
    vips_write(torch::cat({g, alpha}), dir / "ga.png");
    const auto ga = image_read(dir / "ga.png", 1);
    ASSERT_EQ(ga.sizes(), g.sizes());
    EXPECT_TRUE(torch::equal(ga.slice(1, 0, 16).slice(2, 0, 24), g.slice(1, 0, 16).slice(2, 0, 24)));
    EXPECT_TRUE(ga.slice(2, 24).eq(255).all().item<bool>());
}

TEST(ImageIo, SixteenBitImagesAreScaledToEightBits) {
    TempDir dir("ips_image_io_16");
    const auto v8 = pattern_image(20, 30);
    // v * 257 spans 0..65535; stored through int16 with the same bits as uint16.
    const auto v16 = (v8.to(torch::kInt32) * 257).to(torch::kInt16);
    vips_write(v16.slice(0, 0, 1).contiguous(), dir / "grey16.png");
    vips_write(v16, dir / "rgb16.png");
    EXPECT_EQ(vips::VImage::new_from_file((dir / "rgb16.png").c_str()).format(), VIPS_FORMAT_USHORT);  // 16 bits on disk
    EXPECT_TRUE(torch::equal(image_read(dir / "grey16.png", 1), v8.slice(0, 0, 1)));
    EXPECT_TRUE(torch::equal(image_read(dir / "rgb16.png", 3), v8));
    const auto grey3 = image_read(dir / "grey16.png", 3);
    for (int c = 0; c < 3; ++c) EXPECT_TRUE(torch::equal(grey3[c], v8[0])) << c;
}

TEST(ImageIo, MissingCorruptAndTruncatedFilesAreNamed) {
    TempDir dir("ips_image_io_bad");
    const std::string missing = dir / "nope.png";
    std::string e = error_of([&] { image_read(missing, 3); });
    EXPECT_NE(e.find(missing), std::string::npos) << e;
    EXPECT_NE(e.find("cannot read image"), std::string::npos) << e;

    const std::string garbage = dir / "garbage.png";
    std::ofstream(garbage) << "this is not a PNG file at all";
    e = error_of([&] { image_read(garbage, 1); });
    EXPECT_NE(e.find(garbage), std::string::npos) << e;

    png_write(dir / "whole.png", pattern_image(200, 200), 0);
    std::ifstream in(dir / "whole.png", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)), {});
    const std::string cut = dir / "cut.png";
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    e = error_of([&] { image_read(cut, 3); });
    EXPECT_NE(e.find(cut), std::string::npos) << e;

    const std::string jpeg_cut = dir / "cut.jpg";
    vips_write(smooth_image(200, 200), dir / "whole.jpg");
    std::ifstream jin(dir / "whole.jpg", std::ios::binary);
    const std::string jbytes((std::istreambuf_iterator<char>(jin)), {});
    std::ofstream(jpeg_cut, std::ios::binary) << jbytes.substr(0, jbytes.size() / 2);
    e = error_of([&] { image_read(jpeg_cut, 3); });
    EXPECT_NE(e.find(jpeg_cut), std::string::npos) << e;

    e = error_of([&] { image_read(dir / "whole.png", 2); });
    EXPECT_NE(e.find("whole.png"), std::string::npos) << e;
    EXPECT_NE(e.find("not 2"), std::string::npos) << e;
    EXPECT_THROW(image_read(dir / "whole.png", 4), std::invalid_argument);
}

TEST(ImageIo, PngWriteRefusesWhatIsNotAnImage) {
    TempDir dir("ips_image_io_write");
    std::string e = error_of([&] { png_write(dir / "f.png", torch::zeros({3, 4, 4})); });
    EXPECT_NE(e.find("f.png"), std::string::npos) << e;
    EXPECT_THROW(png_write(dir / "two.png", torch::zeros({2, 4, 4}, torch::kUInt8)), std::invalid_argument);
    EXPECT_THROW(png_write(dir / "flat.png", torch::zeros({4, 4}, torch::kUInt8)), std::invalid_argument);
    const std::string nowhere = dir / "no_dir/x.png";
    e = error_of([&] { png_write(nowhere, torch::zeros({1, 4, 4}, torch::kUInt8)); });
    EXPECT_NE(e.find(nowhere), std::string::npos) << e;
    EXPECT_TRUE(fs::is_empty(dir.path));
    // A view that is not contiguous is written as the pixels it shows.
    const auto wide = pattern_image(10, 20);
    const auto view = wide.slice(2, 5, 15);
    png_write(dir / "view.png", view);
    EXPECT_TRUE(torch::equal(image_read(dir / "view.png", 3), view));
}

TEST(ImageIo, ResizeIsBilinearWithoutCornerAlignment) {
    // Same size: the very same tensor.
    const auto image = pattern_image(8, 6);
    EXPECT_TRUE(image_resize(image, 8, 6).is_same(image));
    // Halving averages 2 x 2 blocks, rounded.
    const auto blocks = torch::tensor({10, 20, 1, 2, 30, 40, 3, 5}, torch::kUInt8).view({1, 2, 4});
    const auto half = image_resize(blocks, 1, 2);
    EXPECT_EQ(half.scalar_type(), torch::kUInt8);
    EXPECT_TRUE(torch::equal(half, torch::tensor({25, 3}, torch::kUInt8).view({1, 1, 2})));
    // Doubling [0, 100]: samples at -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    const auto row = torch::tensor({0, 100}, torch::kUInt8).view({1, 1, 2});
    EXPECT_TRUE(torch::equal(image_resize(row, 1, 4), torch::tensor({0, 25, 75, 100}, torch::kUInt8).view({1, 1, 4})));
    // Channels are resized alike and kept apart; a constant stays constant.
    auto two = torch::zeros({3, 5, 7}, torch::kUInt8);
    two[1].fill_(200);
    const auto big = image_resize(two, 11, 13);
    EXPECT_EQ(big.sizes(), (std::vector<int64_t>{3, 11, 13}));
    EXPECT_TRUE(big[0].eq(0).all().item<bool>());
    EXPECT_TRUE(big[1].eq(200).all().item<bool>());
}

TEST(ImageIo, LumaIsItuR601) {
    const auto unit = luma(torch::eye(3, torch::kFloat64));  // columns: pure red, green, blue
    ASSERT_EQ(unit.sizes(), (std::vector<int64_t>{3}));
    EXPECT_EQ(unit.scalar_type(), torch::kFloat64);
    EXPECT_NEAR(unit[0].item<double>(), 0.299, 1e-12);
    EXPECT_NEAR(unit[1].item<double>(), 0.587, 1e-12);
    EXPECT_NEAR(unit[2].item<double>(), 0.114, 1e-12);
    // Any scale, any trailing shape: white stays white, a patch keeps its shape.
    EXPECT_NEAR(luma(torch::full({3}, 255.0f)).item<float>(), 255.0f, 1e-3);
    const auto patch = pattern_image(6, 5).to(torch::kFloat32);
    const auto y = luma(patch);
    EXPECT_EQ(y.sizes(), (std::vector<int64_t>{6, 5}));
    EXPECT_TRUE(torch::allclose(y, patch[0] * 0.299 + patch[1] * 0.587 + patch[2] * 0.114));
}
