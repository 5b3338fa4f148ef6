// One input as training and prediction both see it: an image or slide file (any format libvips
// and OpenSlide read) or a feature bag, opened as a patch source, with where each patch lies in
// the file's level-0 pixels. The CSV data set and `ips predict` open files through this, so a
// model predicts on exactly the patches it was trained on.
#pragma once

#include <string>

#include "ips/config.h"
#include "ips/patch_source.h"
#include "ips/slide.h"

namespace ips {

// ".h5" / ".hdf5", optionally followed by "#group" (a group of the reference's single file), or
// ".pt" (CLAM's pt_files: a torch.save'd [N, F] tensor, no coordinates).
bool bag_path_is(const std::string& path);
// The file of a bag path: "bags/x.h5#slide_1" -> "bags/x.h5".
std::string bag_file_of(const std::string& path);
// The name an input's outputs take: the file's stem, and a bag group's name after it
// ("bags/x.h5#slide_1" -> "x_slide_1"), so the groups of one file do not collide.
std::string input_stem(const std::string& path);
// The bag's rows as a lazy patch source (per-slide layout, or the group after '#').
PatchSourcePtr bag_source_open(const std::string& path);
// Whether the input says where its patches lie: images and slides do; of the bags, only
// per-slide files with `coords` (not the reference's groups, not CLAM's .pt files).
bool input_has_coords(const std::string& path);

// Whether an image is decoded whole and resized to img_size (a photo, as training reads it) rather
// than read tile by tile: a single-level image, no tissue detection, img_size set. Memory then
// grows with the file's pixels (decoded whole, then resized): for large single-level images, leave
// img_size unset so that they are read tile by tile.
bool image_decoded_whole(const Slide& slide, const DataOptions& data);

// The patch source of an image or slide: the tile grid `grid` read on demand (tile_grid_make), or,
// for image_decoded_whole, the decoded and resized image cut by the config's grid.
PatchSourcePtr image_source_open(const SlidePtr& slide, const TileGrid* grid, const Config& cfg);

// Where patches lie: level-0 top-left corners and the size of a patch in level-0 pixels.
struct PatchGeometry {
    torch::Tensor xy;            // [N, 2] int64 (x, y); undefined when unknown (a bag without coords)
    double w = 0, h = 0;         // patch size in level-0 pixels
    double step_w = 0, step_h = 0;  // grid step (stride) in level-0 pixels: w, h where patches tile
    int level = 0;               // level the patches are read at (images decoded whole: 0)
    int64_t w_level = 0, h_level = 0;  // patch size in pixels of `level`
};

struct OpenedInput {
    std::string path;
    PatchSourcePtr source;
    SlidePtr slide;              // images and slides; null for feature bags
    PatchGeometry geometry;
    int64_t width = 0, height = 0;  // level-0 size; for bags, the extent of the coords
};

// Opens an image, slide or bag as the config says (is_image must match the file), makes its tile
// grid (tissue detection included) and the geometry. Throws naming the file or the config key.
OpenedInput input_open(const std::string& path, const Config& cfg);

}  // namespace ips
