// Pictures a person would rather see than numbers: attention over an image, learning curves.
#pragma once

#include <torch/torch.h>

#include <array>
#include <limits>
#include <string>
#include <vector>

namespace ips {

// The colours of scores at t [...] in [0, 1] of the scale: blue -> cyan -> yellow -> red, as
// float 0..255, [3, ...]. Heat maps, overlays and the viewer all use this one ramp.
torch::Tensor score_colours(const torch::Tensor& t);

// A patch scored on a whole image, in the pixels of the picture it is drawn on.
struct ScoredBox {
    double x = 0, y = 0, w = 0, h = 0;  // top-left and size
    double score = 0;
    bool kept = false;                  // among the M patches the aggregator saw
};

// Scores over a thumbnail ([3, h, w] uint8): `cells` [rows, cols] float holds a score per grid
// cell of cell_w x cell_h thumbnail pixels from the top-left corner (NaN where no patch is).
// Each cell is coloured by score on the scale [0, `top`] with opacity growing with the score
// (0.15 .. 0.75); the `outlined` boxes (the kept patches) are outlined in black; a legend on the
// right shows the colour bar, its score ticks and `title`. Costs O(pixels), not O(patches): a
// million patches draw as fast as a hundred. Returns [3, h', w + legend] uint8 (h' >= h, for the
// legend).
torch::Tensor heatmap_thumbnail_render(const torch::Tensor& thumb, const torch::Tensor& cells, double cell_w,
                                       double cell_h, const std::vector<ScoredBox>& outlined, double top,
                                       const std::string& title);

// A gallery of patches ([3, h, w] uint8 each, any size; shown at `side` pixels) in a grid of
// `cols` columns, each captioned with its caption. Returns [3, H, W] uint8 on white.
torch::Tensor gallery_render(const std::vector<torch::Tensor>& patches, const std::vector<std::string>& captions,
                             int64_t side = 160, int64_t cols = 4);

// A line chart of one or more series over epochs, [3, H, W] uint8, with both axes' ticks labelled
// (epochs 1, 2, ... or every k-th when there are many).
struct Series {
    std::string name;
    std::vector<double> values;  // one per epoch
    // A faint dashed line in the series' colour at this level, e.g. the chance level of a task's
    // metric, so that a curve stuck at chance reads as such at a glance (NaN: none).
    double chance = std::numeric_limits<double>::quiet_NaN();
};
torch::Tensor curve_render(const std::vector<Series>& series, const std::string& title, int64_t width = 800,
                           int64_t height = 480);

}  // namespace ips
