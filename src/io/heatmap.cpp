#include "ips/heatmap.h"

#include <vips/vips8>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "ips/image_io.h"

namespace ips {
namespace {

using torch::indexing::Slice;

struct PatchBox {
    int64_t x = 0, y = 0, w = 0, h = 0;
};

// Blue -> cyan -> yellow -> red for t in [0, 1] (the "jet" ramp), as 0..255 floats.
std::array<float, 3> ramp(double t) {
    auto c = [](double v) { return static_cast<float>(255.0 * std::clamp(v, 0.0, 1.0)); };
    return {c(1.5 - std::abs(4 * t - 3)), c(1.5 - std::abs(4 * t - 2)), c(1.5 - std::abs(4 * t - 1))};
}

torch::Tensor colour(const std::array<float, 3>& rgb) { return torch::tensor({rgb[0], rgb[1], rgb[2]}).view({3, 1, 1}); }

void rect_fill(torch::Tensor& canvas, int64_t x0, int64_t y0, int64_t x1, int64_t y1, const torch::Tensor& c,
               float alpha) {
    const int64_t H = canvas.size(1), W = canvas.size(2);
    x0 = std::clamp<int64_t>(x0, 0, W), x1 = std::clamp<int64_t>(x1, 0, W);
    y0 = std::clamp<int64_t>(y0, 0, H), y1 = std::clamp<int64_t>(y1, 0, H);
    if (x0 >= x1 || y0 >= y1) return;
    auto region = canvas.index({Slice(), Slice(y0, y1), Slice(x0, x1)});
    region.mul_(1 - alpha).add_(c * alpha);
}

void outline(torch::Tensor& canvas, const PatchBox& b, const torch::Tensor& c, int64_t thick) {
    rect_fill(canvas, b.x, b.y, b.x + b.w, b.y + thick, c, 1);
    rect_fill(canvas, b.x, b.y + b.h - thick, b.x + b.w, b.y + b.h, c, 1);
    rect_fill(canvas, b.x, b.y, b.x + thick, b.y + b.h, c, 1);
    rect_fill(canvas, b.x + b.w - thick, b.y, b.x + b.w, b.y + b.h, c, 1);
}

// Rendered text as an alpha mask [h, w] float in [0, 1]; empty when libvips has no text support.
torch::Tensor text_mask(const std::string& text, int dpi) {
    vips_ensure_init();
    try {
        vips::VImage t = vips::VImage::text(text.c_str(), vips::VImage::option()->set("dpi", dpi));
        size_t size = 0;
        void* mem = t.write_to_memory(&size);
        auto mask = torch::from_blob(mem, {t.height(), t.width()}, [](void* p) { g_free(p); }, torch::kUInt8);
        return mask.to(torch::kFloat32) / 255.0;
    } catch (const vips::VError&) {
        return {};
    }
}

void text_draw(torch::Tensor& canvas, const std::string& text, int64_t x, int64_t y, const torch::Tensor& c,
               int dpi = 72) {
    auto mask = text_mask(text, dpi);
    if (!mask.defined()) return;
    const int64_t H = canvas.size(1), W = canvas.size(2);
    const int64_t h = std::min(mask.size(0), H - y), w = std::min(mask.size(1), W - x);
    if (h <= 0 || w <= 0 || x < 0 || y < 0) return;
    auto m = mask.index({Slice(0, h), Slice(0, w)}).unsqueeze(0);
    auto region = canvas.index({Slice(), Slice(y, y + h), Slice(x, x + w)});
    region.mul_(1 - m).add_(c * m);
}

// A faint dashed line 2 px high from x0 to x1 at y: 6 px on, 6 off.
void dashes_draw(torch::Tensor& canvas, int64_t x0, int64_t x1, int64_t y, const torch::Tensor& c) {
    for (int64_t x = x0; x < x1; x += 12) rect_fill(canvas, x, y, x + 6, y + 2, c, 0.35f);
}

std::string number(double v) {
    char s[32];
    std::snprintf(s, sizeof s, "%.3g", v);
    return s;
}

}  // namespace

torch::Tensor score_colours(const torch::Tensor& t) {
    const auto u = t.to(torch::kFloat32).clamp(0, 1);
    // ramp() for every element at once.
    auto channel = [&](double shift) { return (1.5 - (4 * u - shift).abs()).clamp(0, 1) * 255; };
    return torch::stack({channel(3), channel(2), channel(1)});
}

torch::Tensor heatmap_thumbnail_render(const torch::Tensor& thumb, const torch::Tensor& cells, double cell_w,
                                       double cell_h, const std::vector<ScoredBox>& outlined, double top,
                                       const std::string& title) {
    TORCH_CHECK(thumb.dim() == 3 && thumb.size(0) == 3, "heatmap_thumbnail_render takes [3, H, W]");
    TORCH_CHECK(cells.dim() == 2 && cell_w > 0 && cell_h > 0, "heatmap_thumbnail_render: cells [rows, cols]");
    const int64_t H = thumb.size(1), W = thumb.size(2), legend = 130, bar_h = std::max<int64_t>(H, 240) - 60;
    auto canvas = torch::full({3, std::max<int64_t>(H, 240), W + legend}, 255.0f);
    // Each thumbnail pixel looks up its cell; pixels beyond the grid get none. A band of rows at a
    // time, so the temporaries stay small whatever the thumbnail's size.
    const auto c = cells.to(torch::kFloat32).contiguous();
    auto padded = torch::full({c.size(0) + 1, c.size(1) + 1}, NAN, torch::kFloat32);
    padded.index({Slice(0, c.size(0)), Slice(0, c.size(1))}).copy_(c);
    const auto col = (torch::arange(W, torch::kFloat64).add(0.5) / cell_w).floor().to(torch::kLong).clamp_max(c.size(1));
    const auto row = (torch::arange(H, torch::kFloat64).add(0.5) / cell_h).floor().to(torch::kLong).clamp_max(c.size(0));
    const auto by_col = padded.index_select(1, col);  // [rows + 1, W]
    for (int64_t y0 = 0; y0 < H; y0 += 256) {
        const int64_t y1 = std::min(H, y0 + 256);
        const auto per_pixel = by_col.index_select(0, row.slice(0, y0, y1));  // [band, W]
        const auto scored = per_pixel.isnan().logical_not();
        const auto t = (top > 0 ? per_pixel / float(top) : torch::zeros_like(per_pixel)).nan_to_num(0).clamp(0, 1);
        const auto alpha = torch::where(scored, 0.15f + 0.6f * t, torch::zeros_like(t));
        const auto image = thumb.index({Slice(), Slice(y0, y1)}).to(torch::kFloat32);
        canvas.index({Slice(), Slice(y0, y1), Slice(0, W)}).copy_(image * (1 - alpha) + score_colours(t) * alpha);
    }
    const auto black = colour({0, 0, 0}), ink = colour({40, 40, 40});
    const int64_t thick = std::max<int64_t>(1, std::min(H, W) / 400);
    auto px = [](double v) { return int64_t(std::floor(v)); };
    for (const ScoredBox& b : outlined) {
        const int64_t x0 = px(b.x), y0 = px(b.y);
        const int64_t w = std::max<int64_t>(px(b.x + b.w) - x0, 2 * thick + 1);
        const int64_t h = std::max<int64_t>(px(b.y + b.h) - y0, 2 * thick + 1);
        outline(canvas, PatchBox{x0, y0, w, h}, black, thick);
    }
    // The legend: a colour bar from 0 (bottom) to `top` (top), five ticks, the title above.
    const int64_t bx = W + 16, by = 40;
    for (int64_t y = 0; y < bar_h; ++y)
        rect_fill(canvas, bx, by + y, bx + 22, by + y + 1, colour(ramp(1.0 - double(y) / double(bar_h - 1))), 1);
    for (int k = 0; k <= 4; ++k) {
        const int64_t y = by + (bar_h - 1) * (4 - k) / 4;
        rect_fill(canvas, bx + 22, y, bx + 28, y + 1, ink, 1);
        text_draw(canvas, number(top * k / 4), bx + 32, y - 6, ink);
    }
    text_draw(canvas, title, W + 8, 10, ink);
    return canvas.clamp(0, 255).to(torch::kUInt8);
}

torch::Tensor gallery_render(const std::vector<torch::Tensor>& patches, const std::vector<std::string>& captions,
                             int64_t side, int64_t cols) {
    TORCH_CHECK(patches.size() == captions.size(), "gallery_render: one caption per patch");
    const int64_t n = int64_t(patches.size()), pad = 8, caption = 22;
    cols = std::max<int64_t>(1, std::min(cols, n));
    const int64_t rows = std::max<int64_t>(1, (n + cols - 1) / cols);
    auto canvas = torch::full({3, pad + rows * (side + caption + pad), pad + cols * (side + pad)}, 255.0f);
    const auto ink = colour({40, 40, 40});
    for (int64_t k = 0; k < n; ++k) {
        const auto& p = patches[size_t(k)];
        TORCH_CHECK(p.dim() == 3 && p.size(0) == 3, "gallery_render: patches are [3, h, w]");
        const int64_t x = pad + (k % cols) * (side + pad), y = pad + (k / cols) * (side + caption + pad);
        const auto shown = image_resize(p, side, side).to(torch::kFloat32);
        canvas.index({Slice(), Slice(y, y + side), Slice(x, x + side)}).copy_(shown);
        text_draw(canvas, captions[size_t(k)], x, y + side + 4, ink);
    }
    return canvas.clamp(0, 255).to(torch::kUInt8);
}

torch::Tensor curve_render(const std::vector<Series>& series, const std::string& title, int64_t width,
                           int64_t height) {
    auto canvas = torch::full({3, height, width}, 255.0f);
    const int64_t left = 70, right = 230, top = 40, bottom = 50;
    const int64_t pw = width - left - right, ph = height - top - bottom;
    double lo = 0, hi = 1;
    size_t n = 0;
    for (const auto& s : series)
        for (double v : s.values)
            if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v), n = std::max(n, s.values.size());
    const auto ink = colour({60, 60, 60});
    const auto grid = colour({225, 225, 225});
    for (int k = 0; k <= 4; ++k) {  // horizontal grid and y labels
        const int64_t y = top + ph - ph * k / 4;
        rect_fill(canvas, left, y, left + pw, y + 1, grid, 1);
        char label[32];
        std::snprintf(label, sizeof label, "%.2f", lo + (hi - lo) * k / 4);
        text_draw(canvas, label, 8, y - 8, ink);
    }
    rect_fill(canvas, left, top, left + 2, top + ph, ink, 1);
    rect_fill(canvas, left, top + ph, left + pw, top + ph + 2, ink, 1);
    text_draw(canvas, title, left, 10, ink, 90);
    auto px = [&](double i) { return left + static_cast<int64_t>(std::llround(n > 1 ? pw * i / (n - 1) : pw / 2)); };
    auto py = [&](double val) { return top + ph - static_cast<int64_t>(std::llround(ph * (val - lo) / (hi - lo))); };
    // Epoch ticks: every epoch up to 20, otherwise a step that keeps about ten labels.
    const size_t every = n <= 20 ? 1 : (n + 9) / 10;
    for (size_t e = 0; e < n; e += every) {
        const int64_t x = px(static_cast<double>(e));
        rect_fill(canvas, x, top + ph, x + 1, top + ph + 6, ink, 1);
        const std::string label = std::to_string(e + 1);
        text_draw(canvas, label, x - 4 * static_cast<int64_t>(label.size()), top + ph + 8, ink);
    }
    text_draw(canvas, "epoch", left + pw / 2 - 20, top + ph + 28, ink);
    for (size_t s = 0; s < series.size(); ++s) {
        auto c = colour(ramp(series.size() > 1 ? static_cast<double>(s) / (series.size() - 1) : 0.0));
        const double chance = series[s].chance;
        if (std::isfinite(chance) && chance >= lo && chance <= hi)
            dashes_draw(canvas, left + 2, left + pw, py(chance), c);
        const auto& v = series[s].values;
        for (size_t i = 0; i < v.size(); ++i) {
            if (!std::isfinite(v[i])) continue;
            rect_fill(canvas, px(i) - 3, py(v[i]) - 3, px(i) + 4, py(v[i]) + 4, c, 1);
            if (i + 1 < v.size() && std::isfinite(v[i + 1])) {  // segment as a run of dots
                const int steps = static_cast<int>(std::max<int64_t>(
                    40, std::abs(py(v[i + 1]) - py(v[i])) + std::abs(px(i + 1.0) - px(i))));
                for (int k = 0; k <= steps; ++k) {
                    const double f = static_cast<double>(k) / steps;
                    const int64_t x = px(i + f), y = py(v[i] + f * (v[i + 1] - v[i]));
                    rect_fill(canvas, x - 1, y - 1, x + 2, y + 2, c, 1);
                }
            }
        }
        const int64_t ly = top + 10 + static_cast<int64_t>(s) * 22;
        rect_fill(canvas, left + pw + 15, ly, left + pw + 35, ly + 4, c, 1);
        text_draw(canvas, series[s].name, left + pw + 42, ly - 7, ink);
    }
    if (std::any_of(series.begin(), series.end(), [](const Series& s) { return std::isfinite(s.chance); })) {
        const int64_t ly = top + 10 + static_cast<int64_t>(series.size()) * 22;
        dashes_draw(canvas, left + pw + 15, left + pw + 35, ly, ink);
        text_draw(canvas, "chance level", left + pw + 42, ly - 7, ink);
    }
    return canvas.clamp(0, 255).to(torch::kUInt8);
}

}  // namespace ips
