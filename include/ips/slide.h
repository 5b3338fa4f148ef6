// Images of any size, read region by region through libvips: whole-slide formats through
// OpenSlide (SVS, NDPI, MRXS, ...), tiled and pyramidal TIFF / BigTIFF, and every other format
// libvips reads (JPEG, PNG, WebP, JPEG 2000, ...). Coordinates are level-0 pixels, as in OpenSlide;
// alpha is composited on white. Only the regions asked for are decoded (for formats that store
// tiles), so neither memory nor time grows with the image.
#pragma once

#include <torch/torch.h>

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "ips/patch_source.h"

namespace ips {

struct SlideLevel {
    int64_t width = 0, height = 0;
    double downsample = 1;  // level-0 pixels per pixel of this level
};

struct Slide;  // an open file; region reads may come from several threads
using SlidePtr = std::shared_ptr<Slide>;

// Opens the file and reads its levels. Throws std::runtime_error naming the file when it is
// missing, truncated, corrupt or of a format libvips cannot read.
SlidePtr slide_open(const std::string& path);

const std::string& slide_path(const Slide& slide);
const std::vector<SlideLevel>& slide_levels(const Slide& slide);
// Micrometres per level-0 pixel (OpenSlide's mpp, or TIFF resolution); 0 when the file says nothing.
double slide_mpp(const Slide& slide);
// The loader libvips chose ("openslideload", "tiffload", "jpegload", ...).
const std::string& slide_loader(const Slide& slide);

// The level to read for a target resolution: the coarsest level whose pixels are no larger than
// `mpp` (within 10 %), so a patch is never upsampled. Throws when the slide has no mpp.
int slide_level_for_mpp(const Slide& slide, double mpp);

// RGB pixels [3, h, w] uint8 of the region whose top-left is (x, y) in level-0 pixels and whose
// size (w, h) is in pixels of `level`. Parts outside the image are white.
torch::Tensor slide_read_region(Slide& slide, int level, int64_t x, int64_t y, int64_t w, int64_t h);

// The whole image, at most `max_side` pixels on its longer side, from the coarsest level that
// is still large enough: [3, h, w] uint8, and the level-0 pixels per thumbnail pixel.
struct Thumbnail {
    torch::Tensor rgb;   // [3, h, w] uint8
    double downsample = 1;
};
Thumbnail slide_thumbnail(Slide& slide, int64_t max_side);

// Where the patches of one image are: tiles of `patch` x `patch` pixels of `level` whose level-0
// top-left corners are `coords` [N, 2] int64 (x, y). `cols` is the number of columns of the
// full tile grid the coordinates come from (for heat maps), or 0.
struct TileGrid {
    int level = 0;
    int64_t patch = 256;         // tile side in pixels of `level`
    int64_t stride = 256;        // in pixels of `level`
    torch::Tensor coords;        // [N, 2] int64, level-0 (x, y)
    int64_t cols = 0, rows = 0;  // the full grid
    int64_t out = 0;             // side the tiles are resized to when read (0: `patch`, as read)
};

// Every tile of the full grid at `level` (row-major; tiles crossing the border are left out).
TileGrid tile_grid_full(const Slide& slide, int level, int64_t patch, int64_t stride);

// A region painted into a generated pyramid: level-0 pixels, a flat dark blue unlike the texture
// (a "needle" a test or a user can look for).
struct NeedleBox {
    int64_t x = 0, y = 0, w = 0, h = 0;
};

// Writes a tiled, JPEG-compressed pyramidal BigTIFF of width x height pixels with a repeating
// stain-like texture and 0.25 µm per pixel, with the needles painted on: test and benchmark input
// of any size, written in bounded memory (libvips streams it). Atomic (temporary file, then rename).
void pyramid_tiff_write(const std::string& path, int64_t width, int64_t height, uint64_t seed = 0, int quality = 85,
                        const std::vector<NeedleBox>& needles = {});

}  // namespace ips
