// Images the io tests write with libvips: a pattern with detail at every scale, in any format
// libvips saves (the file name's suffix and [options] choose it).
#pragma once

#include <torch/torch.h>
#include <vips/vips8>

#include <string>

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

}  // namespace ips::test
