#include "ips/overlay.h"

#include <vips/vips8>

#include <cmath>
#include <filesystem>

#include "ips/files.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"

namespace ips {
namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
    throw std::runtime_error("'" + path + "': " + what);
}

std::string vips_message(const vips::VError& e) {
    std::string msg = e.what();
    while (!msg.empty() && msg.back() == '\n') msg.pop_back();
    return msg;
}

// The layer enlarged to the image's level-0 size: nearest neighbour, so each patch's cell stays
// one flat colour, and transparent beyond the grid. Lazy: libvips computes tiles as they are saved.
vips::VImage layer_image(const ScoreLayer& layer) {
    const int rows = int(layer.rgba.size(0)), cols = int(layer.rgba.size(1));
    vips::VImage cells =
        vips::VImage::new_from_memory(layer.rgba.data_ptr(), size_t(layer.rgba.numel()), cols, rows, 4, VIPS_FORMAT_UCHAR)
            .copy_memory()
            .copy(vips::VImage::option()->set("interpretation", VIPS_INTERPRETATION_sRGB));
    vips::VImage big = cells.resize(layer.cell_w, vips::VImage::option()
                                                       ->set("vscale", layer.cell_h)
                                                       ->set("kernel", VIPS_KERNEL_NEAREST));
    const int w = int(std::min<int64_t>(big.width(), layer.width)), h = int(std::min<int64_t>(big.height(), layer.height));
    return big.crop(0, 0, w, h).embed(0, 0, int(layer.width), int(layer.height),
                                      vips::VImage::option()->set("extend", VIPS_EXTEND_BLACK));
}

DeepZoomInfo deepzoom_write(vips::VImage img, const std::string& base, const std::string& format) {
    DeepZoomInfo info;
    info.width = img.width();
    info.height = img.height();
    info.format = format == "png" ? "png" : "jpg";  // the tiles' file extension, which OpenSeadragon asks for
    std::error_code ec;
    std::filesystem::remove(base + ".dzi", ec);
    std::filesystem::remove_all(base + "_files", ec);
    img.dzsave(base.c_str(), vips::VImage::option()
                                 ->set("tile_size", info.tile_size)
                                 ->set("overlap", info.overlap)
                                 ->set("suffix", format == "png" ? ".png" : ".jpg[Q=85]"));
    // libvips adds the source's metadata, with the time it was written: not for viewers, and it
    // would make equal outputs differ.
    std::filesystem::remove(base + "_files/vips-properties.xml", ec);
    return info;
}

}  // namespace

torch::Tensor score_cells(const torch::Tensor& xy, double step_w, double step_h, const torch::Tensor& scores,
                          int64_t width, int64_t height) {
    TORCH_CHECK(xy.dim() == 2 && xy.size(1) == 2 && scores.numel() == xy.size(0), "score_cells: xy [N, 2] and scores [N]");
    TORCH_CHECK(step_w > 0 && step_h > 0 && width > 0 && height > 0, "score_cells: empty grid or image");
    const int64_t cols = std::max<int64_t>(1, int64_t(std::ceil(double(width) / step_w)));
    const int64_t rows = std::max<int64_t>(1, int64_t(std::ceil(double(height) / step_h)));
    // Patches are tens of pixels or more: a grid this fine means coordinates that are not on one.
    if (double(rows) * double(cols) > double(int64_t(1) << 28))
        throw std::runtime_error("the patches' grid would have " + std::to_string(rows) + " x " + std::to_string(cols) +
                                 " cells (a step of " + std::to_string(step_w) + " x " + std::to_string(step_h) +
                                 " pixels over " + std::to_string(width) + " x " + std::to_string(height) +
                                 "): the patch coordinates are not on a grid");
    auto cells = torch::full({rows, cols}, NAN, torch::kFloat32);
    const auto c = xy.to(torch::kCPU, torch::kFloat64);
    const auto col = (c.select(1, 0) / step_w).round().to(torch::kLong);
    const auto row = (c.select(1, 1) / step_h).round().to(torch::kLong);
    const auto inside = col.ge(0) & col.lt(cols) & row.ge(0) & row.lt(rows);
    cells.view({-1}).index_put_({(row * cols + col).index({inside})},
                                scores.to(torch::kCPU, torch::kFloat32).flatten().index({inside}));
    return cells;
}

ScoreLayer score_layer_make(const torch::Tensor& xy, double step_w, double step_h, const torch::Tensor& scores,
                            double top, int64_t width, int64_t height, int alpha) {
    ScoreLayer layer;
    layer.cell_w = step_w;
    layer.cell_h = step_h;
    layer.width = width;
    layer.height = height;
    const auto cells = score_cells(xy, step_w, step_h, scores, width, height);  // [rows, cols]
    const auto scored = cells.isnan().logical_not();
    const auto t = (top > 0 ? cells / top : torch::zeros_like(cells)).nan_to_num(0);
    const auto rgb = score_colours(t).round().permute({1, 2, 0});  // [rows, cols, 3]
    auto rgba = torch::cat({rgb, torch::full({rgb.size(0), rgb.size(1), 1}, float(std::clamp(alpha, 0, 255)))}, -1);
    layer.rgba = (rgba * scored.unsqueeze(-1)).to(torch::kUInt8).contiguous();
    return layer;
}

void overlay_tiff_write(const std::string& path, const ScoreLayer& layer, double mpp) {
    vips_ensure_init();
    const std::string tmp = path + ".tmp.tif";
    try {
        vips::VImage img = layer_image(layer);
        // libvips takes resolution in pixels per millimetre.
        if (mpp > 0) img = img.copy(vips::VImage::option()->set("xres", 1000.0 / mpp)->set("yres", 1000.0 / mpp));
        img.tiffsave(tmp.c_str(), vips::VImage::option()
                                      ->set("tile", true)
                                      ->set("tile_width", 256)
                                      ->set("tile_height", 256)
                                      ->set("pyramid", true)
                                      ->set("compression", VIPS_FOREIGN_TIFF_COMPRESSION_DEFLATE)
                                      ->set("bigtiff", true)
                                      ->set("resunit", VIPS_FOREIGN_TIFF_RESUNIT_CM));
    } catch (const vips::VError& e) {
        std::remove(tmp.c_str());
        fail(path, "cannot write the overlay: " + vips_message(e));
    }
    file_commit(tmp, path);
}

DeepZoomInfo deepzoom_slide_write(Slide& slide, const std::string& base) {
    vips_ensure_init();
    try {
        auto opt = vips::VImage::option()->set("access", VIPS_ACCESS_SEQUENTIAL);
        vips::VImage img = vips::VImage::new_from_file(slide_path(slide).c_str(), opt);
        if (img.has_alpha()) img = img.flatten(vips::VImage::option()->set("background", std::vector<double>{255.0}));
        if (img.bands() == 1) img = vips::VImage::bandjoin({img, img, img});
        if (img.bands() > 3) img = img.extract_band(0, vips::VImage::option()->set("n", 3));
        if (img.format() != VIPS_FORMAT_UCHAR) img = img.cast(VIPS_FORMAT_UCHAR);
        return deepzoom_write(img, base, "jpeg");
    } catch (const vips::VError& e) {
        fail(slide_path(slide), "cannot write its DeepZoom tiles to " + base + ": " + vips_message(e));
    }
}

DeepZoomInfo deepzoom_layer_write(const ScoreLayer& layer, const std::string& base) {
    vips_ensure_init();
    try {
        return deepzoom_write(layer_image(layer), base, "png");
    } catch (const vips::VError& e) {
        fail(base, "cannot write the DeepZoom tiles of the scores: " + vips_message(e));
    }
}

}  // namespace ips
