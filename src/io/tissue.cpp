#include "ips/tissue.h"

#include <algorithm>
#include <cmath>

#include "ips/image_io.h"

namespace ips {
namespace {
constexpr float kNearlyWhite = 220.0f;  // mean grey (0..255) above which the dark class is background
}  // namespace

int otsu_threshold(const torch::Tensor& grey) {
    auto g = grey.to(torch::kCPU, torch::kUInt8).contiguous();
    std::array<double, 256> hist{};
    const auto* p = g.data_ptr<uint8_t>();
    for (int64_t k = 0; k < g.numel(); ++k) hist[p[k]] += 1;
    const double total = double(g.numel());
    double sum_all = 0;
    for (int v = 0; v < 256; ++v) sum_all += v * hist[v];
    double best_var = -1, w0 = 0, sum0 = 0;
    int best = 0, lowest = -1;
    for (int t = 0; t < 256; ++t) {  // class 0 = values < t
        if (t > 0) {
            w0 += hist[t - 1];
            sum0 += (t - 1) * hist[t - 1];
        }
        if (lowest < 0 && hist[t] > 0) lowest = t;
        const double w1 = total - w0;
        if (w0 == 0 || w1 == 0) continue;
        const double m0 = sum0 / w0, m1 = (sum_all - sum0) / w1;
        const double var = w0 * w1 * (m0 - m1) * (m0 - m1);
        if (var > best_var) best_var = var, best = t;
    }
    return best_var < 0 ? std::max(lowest, 0) : best;
}

TissueMask tissue_mask_make(Slide& slide, int64_t max_side) {
    TissueMask t;
    t.thumb = slide_thumbnail(slide, max_side);
    auto rgb = t.thumb.rgb.to(torch::kFloat32);
    auto grey = luma(rgb).round().clamp(0, 255).to(torch::kUInt8);
    t.threshold = otsu_threshold(grey);
    t.mask = grey.lt(t.threshold);
    // Otsu always splits in two; on a blank slide it splits scanner noise. Tissue is clearly
    // darker than glass, so a "tissue" class that is nearly white means there is none.
    if (t.mask.any().item<bool>() && grey.masked_select(t.mask).to(torch::kFloat32).mean().item<float>() > kNearlyWhite)
        t.mask.zero_();
    return t;
}

TileGrid tile_grid_tissue(const Slide& slide, const TissueMask& tissue, int level, int64_t patch, int64_t stride,
                          double min_fraction) {
    TileGrid full = tile_grid_full(slide, level, patch, stride);
    const int64_t h = tissue.mask.size(0), w = tissue.mask.size(1);
    // Summed-area table: tissue pixels in any box in O(1).
    auto sat = torch::zeros({h + 1, w + 1}, torch::kFloat64);
    sat.index_put_({torch::indexing::Slice(1), torch::indexing::Slice(1)},
                   tissue.mask.to(torch::kFloat64).cumsum(0).cumsum(1));
    const auto S = sat.accessor<double, 2>();
    const auto c = full.coords.accessor<int64_t, 2>();
    const double side0 = patch * slide_levels(slide)[level].downsample;  // tile side in level-0 pixels
    const double ds = tissue.thumb.downsample;
    std::vector<int64_t> keep;
    for (int64_t n = 0; n < full.coords.size(0); ++n) {
        // The tile's box on the thumbnail, at least one pixel.
        const int64_t x0 = std::min<int64_t>(w - 1, int64_t(std::floor(c[n][0] / ds)));
        const int64_t y0 = std::min<int64_t>(h - 1, int64_t(std::floor(c[n][1] / ds)));
        const int64_t x1 = std::clamp<int64_t>(int64_t(std::ceil((c[n][0] + side0) / ds)), x0 + 1, w);
        const int64_t y1 = std::clamp<int64_t>(int64_t(std::ceil((c[n][1] + side0) / ds)), y0 + 1, h);
        const double inside = S[y1][x1] - S[y0][x1] - S[y1][x0] + S[y0][x0];
        if (inside >= min_fraction * double((x1 - x0) * (y1 - y0))) keep.push_back(n);
    }
    TileGrid g = full;
    g.coords = full.coords.index_select(0, torch::tensor(keep, torch::kLong));
    return g;
}

torch::Tensor tissue_overlay(const Slide& slide, const TissueMask& tissue, const TileGrid& tiles) {
    auto img = tissue.thumb.rgb.clone();
    auto tint = torch::tensor({60.0f, 200.0f, 60.0f}).view({3, 1, 1});
    auto blended = (img.to(torch::kFloat32) * 0.6 + tint * 0.4).round().to(torch::kUInt8);
    img = torch::where(tissue.mask.unsqueeze(0), blended, img);
    const int64_t h = img.size(1), w = img.size(2);
    const double ds = tissue.thumb.downsample;
    const double side = tiles.patch * slide_levels(slide)[tiles.level].downsample / ds;
    auto a = img.accessor<uint8_t, 3>();
    auto paint = [&](int64_t x, int64_t y) {
        if (x < 0 || y < 0 || x >= w || y >= h) return;
        a[0][y][x] = 30, a[1][y][x] = 60, a[2][y][x] = 220;
    };
    const auto c = tiles.coords.accessor<int64_t, 2>();
    for (int64_t n = 0; n < tiles.coords.size(0); ++n) {
        const int64_t x0 = int64_t(c[n][0] / ds), y0 = int64_t(c[n][1] / ds);
        const int64_t x1 = int64_t((c[n][0]) / ds + side) - 1, y1 = int64_t(c[n][1] / ds + side) - 1;
        for (int64_t x = x0; x <= std::max(x0, x1); ++x) paint(x, y0), paint(x, std::max(y0, y1));
        for (int64_t y = y0; y <= std::max(y0, y1); ++y) paint(x0, y), paint(std::max(x0, x1), y);
    }
    return img;
}

TileGrid tile_grid_make(Slide& slide, const DataOptions& data) {
    if (data.patch_size[0] != data.patch_size[1] || data.patch_stride[0] != data.patch_stride[1])
        throw ConfigError("config key 'patch_size': slide tiles are square (patch_size and patch_stride)");
    const int level = data.slide_mpp > 0 ? slide_level_for_mpp(slide, data.slide_mpp) : data.slide_level;
    if (level >= int(slide_levels(slide).size()))
        throw ConfigError("config key 'slide_level': " + slide_path(slide) + " has " +
                          std::to_string(slide_levels(slide).size()) + " level(s), not level " + std::to_string(level));
    // At slide_mpp, a tile covers patch_size pixels of that resolution: on a level of another
    // resolution (level 0 of a 40x slide for 20x tiles) it is read at its side there and resized
    // to patch_size, as TRIDENT's patcher does. Scanners state their nominal magnifications with a
    // few percent off (0.499 or 0.2525 µm for 20x and 40x), and TRIDENT goes by magnification, so
    // a ratio within 10 % of a power of two is that power of two: 0.499 µm read as 0.5 µm stays
    // as it is, 0.2525 µm read as 0.5 µm doubles.
    int64_t patch = data.patch_size[0], stride = data.patch_stride[0], out = 0;
    if (data.slide_mpp > 0) {
        double scale = data.slide_mpp / (slide_mpp(slide) * slide_levels(slide)[size_t(level)].downsample);
        const double nominal = std::exp2(std::round(std::log2(scale)));
        if (std::abs(scale / nominal - 1) <= 0.1) scale = nominal;
        const int64_t read = std::llround(double(patch) * scale);
        if (read != patch) {
            out = patch;
            patch = read;
            stride = std::max<int64_t>(1, std::llround(double(stride) * scale));
        }
    }
    TileGrid g = data.tissue ? tile_grid_tissue(slide, tissue_mask_make(slide), level, patch, stride, data.tissue_min)
                             : tile_grid_full(slide, level, patch, stride);
    if (data.tissue && g.coords.size(0) == 0)
        throw std::runtime_error("image '" + slide_path(slide) + "': no tile has tissue (Otsu threshold on the thumbnail)");
    g.out = out;
    return g;
}

}  // namespace ips
