// Pictures a person would rather see than numbers: attention over an image, learning curves.
#pragma once

#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

namespace ips {

struct PatchBox {
    int64_t x = 0, y = 0;  // top-left, pixels
    int64_t w = 0, h = 0;
    double score = 0;      // attention, painted relative to the largest score
};

// The image ([1 or 3, H, W] uint8) dimmed, with each box filled by a colour for its score
// (blue = low, red = high, blended over the pixels) and outlined. Returns [3, H, W] uint8.
torch::Tensor heatmap_render(const torch::Tensor& image, const std::vector<PatchBox>& boxes);

// The colour of a score at t in [0, 1] of the scale: blue -> cyan -> yellow -> red, 0..255.
std::array<float, 3> score_colour(double t);

// A patch scored on a whole image, in the pixels of the picture it is drawn on.
struct ScoredBox {
    double x = 0, y = 0, w = 0, h = 0;  // top-left and size
    double score = 0;
    bool kept = false;                  // among the M patches the aggregator saw
};

// Every scored patch over a thumbnail ([3, h, w] uint8; boxes in its pixels): colour by score on
// the scale [0, `top`] with opacity growing with the score (0.15 .. 0.75), kept patches outlined
// in black, and a legend on the right with the colour bar, its score ticks and `title`.
// Returns [3, h', w + legend] uint8 (h' >= h so that the legend fits).
torch::Tensor heatmap_thumbnail_render(const torch::Tensor& thumb, const std::vector<ScoredBox>& boxes, double top,
                                       const std::string& title);

// A gallery of patches ([3, h, w] uint8 each, any size; shown at `side` pixels) in a grid of
// `cols` columns, each captioned with its caption. Returns [3, H, W] uint8 on white.
torch::Tensor gallery_render(const std::vector<torch::Tensor>& patches, const std::vector<std::string>& captions,
                             int64_t side = 160, int64_t cols = 4);

// A line chart of one or more series over epochs, [3, H, W] uint8, with axis ticks labelled.
struct Series {
    std::string name;
    std::vector<double> values;  // one per epoch
};
torch::Tensor curve_render(const std::vector<Series>& series, const std::string& title, int64_t width = 800,
                           int64_t height = 480);

}  // namespace ips
