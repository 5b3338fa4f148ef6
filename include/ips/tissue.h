// Where the tissue is: Otsu's threshold on a grey thumbnail, and the tiles that cover enough of it.
#pragma once

#include <torch/torch.h>

#include "ips/config.h"
#include "ips/slide.h"

namespace ips {

struct TissueMask {
    Thumbnail thumb;        // RGB thumbnail the mask was computed on
    torch::Tensor mask;     // [h, w] bool, true = tissue (darker than the threshold)
    int threshold = 0;      // Otsu's threshold on 8-bit grey
};

// Otsu's threshold of 8-bit grey values [any shape] uint8: the t maximising the between-class
// variance of {< t} and {>= t}. A flat image gives its only value (so nothing is below it).
int otsu_threshold(const torch::Tensor& grey);

// Thumbnail of at most `max_side` pixels, grey (ITU-R 601), Otsu, tissue = grey < threshold.
TissueMask tissue_mask_make(Slide& slide, int64_t max_side = 2048);

// The tiles of tile_grid_full(level, patch, stride) whose area is at least `min_fraction` tissue
// (SPEC: 1 %). Keeps the full grid's cols / rows, so heat maps can place the tiles.
TileGrid tile_grid_tissue(const Slide& slide, const TissueMask& tissue, int level, int64_t patch, int64_t stride,
                          double min_fraction = 0.01);

// The thumbnail with the tissue tinted green and every tile outlined in blue: [3, h, w] uint8.
torch::Tensor tissue_overlay(const Slide& slide, const TissueMask& tissue, const TileGrid& tiles);

// The grid a config asks for: level from slide_mpp (when set) or slide_level, tiles of
// patch_size / patch_stride (square) at that level, only tissue tiles when `tissue` is set. With
// slide_mpp, tiles cover patch_size pixels at that resolution: where the level's differs, the
// grid's tiles are of the side that covers it there (`patch`, `stride`) and `out` = patch_size.
// Throws naming the file when no tile has tissue.
TileGrid tile_grid_make(Slide& slide, const DataOptions& data);

}  // namespace ips
