// Scores as images aligned with the slide, for viewers: a full-resolution pyramidal TIFF that
// OpenSlide and QuPath open, and DeepZoom tile folders (of the slide and of the scores) that
// OpenSeadragon shows in a browser. Everything is streamed by libvips: memory stays bounded by
// the patch grid, never by the slide's pixels.
#pragma once

#include <torch/torch.h>

#include <string>

#include "ips/slide.h"

namespace ips {

// Scores painted on the patch grid: one cell per grid step, each patch's cell coloured by its
// score (score_colours of heatmap.h), transparent where there is no patch.
struct ScoreLayer {
    torch::Tensor rgba;              // [rows, cols, 4] uint8
    double cell_w = 1, cell_h = 1;   // level-0 pixels per cell (the grid's stride)
    int64_t width = 0, height = 0;   // level-0 size of the image the layer lies on
};

// The scores on the grid's cells: [rows, cols] float, NaN where no patch is; a patch at level-0
// (x, y) lands in cell (round(y / step_h), round(x / step_w)). The grid covers width x height.
torch::Tensor score_cells(const torch::Tensor& xy, double step_w, double step_h, const torch::Tensor& scores,
                          int64_t width, int64_t height);

// xy: [N, 2] int64 level-0 top-left corners on a grid anchored at (0, 0) with steps (step_w,
// step_h); scores: [N] float. Colour position score / top; opacity `alpha` (0..255) where scored.
ScoreLayer score_layer_make(const torch::Tensor& xy, double step_w, double step_h, const torch::Tensor& scores,
                            double top, int64_t width, int64_t height, int alpha = 255);

// The layer at level-0 size (width x height) as a tiled, pyramidal, deflate-compressed RGBA
// BigTIFF with the slide's resolution (`mpp` µm per pixel, 0 for none), written atomically.
void overlay_tiff_write(const std::string& path, const ScoreLayer& layer, double mpp);

// What a DeepZoom image (NAME.dzi and NAME_files/) holds, for an inline OpenSeadragon source.
struct DeepZoomInfo {
    int64_t width = 0, height = 0;
    int tile_size = 254, overlap = 1;
    std::string format;  // the tiles' file extension: "jpg" or "png"
};

// Level 0 of the slide as DeepZoom JPEG tiles under BASE.dzi / BASE_files/.
DeepZoomInfo deepzoom_slide_write(Slide& slide, const std::string& base);
// The layer at level-0 size as DeepZoom PNG tiles (transparency kept).
DeepZoomInfo deepzoom_layer_write(const ScoreLayer& layer, const std::string& base);

}  // namespace ips
