// Images the io tests read: a pattern with detail at every scale, written by libvips in any format
// it saves (the file name's suffix and [options] choose it), and the real Aperio slide.
#pragma once

#include <torch/torch.h>
#include <vips/vips8>

#include <filesystem>
#include <string>

#include "test_support.h"
#include "ips/image_io.h"

namespace ips::test {

// A [3, H, W] uint8 image with detail at every scale.
inline torch::Tensor pattern_image(int64_t H, int64_t W) {
    auto y = torch::arange(H).view({H, 1}).to(torch::kFloat32), x = torch::arange(W).view({1, W}).to(torch::kFloat32);
    auto r = (torch::sin(x / 37) * torch::cos(y / 23) * 100 + 128);
    auto g = ((x + 2 * y).remainder(251));
    auto b = ((x * y).remainder(241));
    return torch::stack({r, g.expand({H, W}), b}).clamp(0, 255).to(torch::kUInt8);
}

// Writes [C, H, W] (uint8, or int16 holding the bits of uint16 for 16-bit files) through libvips; `path` may carry save
// options ("a.tif[tile,compression=deflate]").
inline void vips_write(const torch::Tensor& chw, const std::string& path, vips::VOption* options = nullptr) {
    vips_ensure_init();
    auto hwc = chw.permute({1, 2, 0}).contiguous();
    const VipsBandFormat format = hwc.scalar_type() == torch::kUInt8 ? VIPS_FORMAT_UCHAR : VIPS_FORMAT_USHORT;
    auto img = vips::VImage::new_from_memory(hwc.data_ptr(), size_t(hwc.numel()) * hwc.element_size(),
                                             int(hwc.size(1)), int(hwc.size(0)), int(hwc.size(2)), format);
    if (format == VIPS_FORMAT_USHORT)  // savers write 16 bits only for 16-bit interpretations
        img = img.copy(vips::VImage::option()->set(
            "interpretation", hwc.size(2) < 3 ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_RGB16));
    img.write_to_file(path.c_str(), options);
}

// A lossless tiled pyramid of [C, H, W] uint8, levels 2x apart: exact pixels at level 0.
inline void vips_pyramid_write(const torch::Tensor& chw, const std::string& path, int tile = 128) {
    const std::string t = std::to_string(tile);
    vips_write(chw, path + "[tile,tile-width=" + t + ",tile-height=" + t + ",pyramid,compression=deflate]");
}

// A 1100 x 1700 pattern and its pyramid "pyr.tif" in `dir`, 128-pixel tiles: three levels or more.
struct PatternPyramid {
    torch::Tensor image;
    std::string path;
};

inline PatternPyramid pattern_pyramid_write(const TempDir& dir) {
    PatternPyramid p{pattern_image(1100, 1700), dir / "pyr.tif"};
    vips_pyramid_write(p.image, p.path);
    return p;
}

inline std::string svs_path() { return test_slide_path(); }

}  // namespace ips::test

// A missing slide fails the test rather than skipping it, so that a broken setup cannot pass.
#define REQUIRE_SVS()                                      \
    if (!std::filesystem::exists(ips::test::svs_path())) \
    GTEST_FAIL() << "the Aperio test slide is missing: " << ips::test::svs_path()
