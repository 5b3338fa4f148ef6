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

// A line chart of one or more series over epochs, [3, H, W] uint8, with axis ticks labelled.
struct Series {
    std::string name;
    std::vector<double> values;  // one per epoch
};
torch::Tensor curve_render(const std::vector<Series>& series, const std::string& title, int64_t width = 800,
                           int64_t height = 480);

}  // namespace ips
