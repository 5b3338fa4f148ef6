#include "ips/image_io.h"

#include <vips/vips8>

#include <cstdio>
#include <filesystem>
#include <mutex>

#include "ips/config.h"

namespace ips {

void vips_ensure_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (VIPS_INIT("ips")) throw std::runtime_error("libvips failed to initialise");
        // Every opened file is a cached operation holding its decoder (and OpenSlide's tile cache);
        // a data set opens thousands, and libvips' default cache keeps 100 of them alive.
        vips_cache_set_max(16);
        vips_cache_set_max_files(16);
    });
}

torch::Tensor image_read(const std::string& path, int64_t channels) {
    vips_ensure_init();
    if (channels != 1 && channels != 3)
        throw std::invalid_argument(path + ": images are read with 1 or 3 channels, not " + std::to_string(channels));
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw FileNotFound(path + ": cannot read image: no such file");
    try {
        vips::VImage img = vips::VImage::new_from_file(
            path.c_str(), vips::VImage::option()->set("access", VIPS_ACCESS_SEQUENTIAL)->set("fail", true));
        if (img.has_alpha()) img = img.flatten(vips::VImage::option()->set("background", std::vector<double>{255.0}));
        const bool wide = img.format() == VIPS_FORMAT_USHORT || img.interpretation() == VIPS_INTERPRETATION_RGB16 ||
                          img.interpretation() == VIPS_INTERPRETATION_GREY16;
        img = img.colourspace(channels == 1 ? (wide ? VIPS_INTERPRETATION_GREY16 : VIPS_INTERPRETATION_B_W)
                                            : (wide ? VIPS_INTERPRETATION_RGB16 : VIPS_INTERPRETATION_sRGB));
        if (wide) img = img.cast(VIPS_FORMAT_UCHAR, vips::VImage::option()->set("shift", true));
        else if (img.format() != VIPS_FORMAT_UCHAR) img = img.cast(VIPS_FORMAT_UCHAR);
        if (img.bands() != channels) img = img.extract_band(0, vips::VImage::option()->set("n", static_cast<int>(channels)));
        const int64_t H = img.height(), W = img.width();
        size_t size = 0;
        void* mem = img.write_to_memory(&size);
        if (static_cast<int64_t>(size) != H * W * channels) {
            g_free(mem);
            throw std::runtime_error(path + ": decoded size does not match the image header");
        }
        // libvips gives interleaved [H, W, C]; the model wants planar [C, H, W].
        auto hwc = torch::from_blob(mem, {H, W, channels}, [](void* p) { g_free(p); }, torch::kUInt8);
        return hwc.permute({2, 0, 1}).contiguous();
    } catch (const vips::VError& e) {
        std::string msg = e.what();
        while (!msg.empty() && msg.back() == '\n') msg.pop_back();
        throw std::runtime_error(path + ": cannot read image: " + msg);
    }
}

torch::Tensor image_resize(const torch::Tensor& image, int64_t H, int64_t W) {
    if (image.size(1) == H && image.size(2) == W) return image;
    namespace F = torch::nn::functional;
    auto opt = F::InterpolateFuncOptions().size(std::vector<int64_t>{H, W}).mode(torch::kBilinear).align_corners(false);
    return F::interpolate(image.unsqueeze(0).to(torch::kFloat32), opt).squeeze(0).round_().clamp_(0, 255).to(torch::kUInt8);
}

torch::Tensor luma(const torch::Tensor& rgb) { return rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114; }

void png_write(const std::string& path, const torch::Tensor& image, int compression) {
    vips_ensure_init();
    if (image.dim() != 3 || image.scalar_type() != torch::kUInt8 || (image.size(0) != 1 && image.size(0) != 3))
        throw std::invalid_argument(path + ": png_write takes [1 or 3, H, W] uint8");
    auto hwc = image.permute({1, 2, 0}).contiguous();
    const std::string tmp = path + ".tmp.png";
    try {
        vips::VImage img = vips::VImage::new_from_memory(hwc.data_ptr(), static_cast<size_t>(hwc.numel()),
                                                         static_cast<int>(hwc.size(1)), static_cast<int>(hwc.size(0)),
                                                         static_cast<int>(hwc.size(2)), VIPS_FORMAT_UCHAR);
        img.pngsave(tmp.c_str(), vips::VImage::option()->set("compression", compression));
    } catch (const vips::VError& e) {
        std::remove(tmp.c_str());
        throw std::runtime_error(path + ": cannot write PNG: " + e.what());
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw std::runtime_error(path + ": cannot move the written PNG into place");
    }
}

}  // namespace ips
