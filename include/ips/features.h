// `ips features`: every tile of a slide through the configured trunk, one HDF5 feature bag per
// slide (feature_bag.h layout: `features` N x F with the encoder's name and F, `coords` N x 2
// level-0, patch_size, patch_level).
#pragma once

#include <functional>

#include "ips/inputs.h"
#include "ips/model.h"

namespace ips {

struct FeaturesOptions {
    torch::ScalarType dtype = torch::kHalf;  // float16 or float32 features on disk
    int64_t batch = 64;                      // tiles per encoder call
    bool progress = true;
    // Called after each batch with the tiles done and the slide's total. It may throw to stop the
    // slide (the Python module's Ctrl-C): then no bag of it is written.
    std::function<void(int64_t done, int64_t total)> on_batch;
};

// An encoder chosen by name (`ips features --encoder`, the Python module's `encoder=`) and its
// weight file as config overrides, to go before the user's own (which win over them): resnet18/34/50
// set enc_type; a ViT preset brings what its model expects, RGB tiles of its resize side at its
// resolution, its own normalisation and its output width as D. "" leaves each unset. An unknown
// name throws ConfigError listing the known ones.
std::vector<std::string> features_encoder_overrides(const std::string& encoder, const std::string& weights);

// Throws ConfigError naming the key when the config cannot make features of slide tiles: it must
// be an RGB image encoder, and `pretrained` without an `encoder_weights` file is refused (features
// of random weights look like features).
void features_config_check(const Config& cfg);

struct FeaturesResult {
    std::string out;          // OUT/<slide stem>.h5
    bool already_done = false;
    std::string redone_why;   // an incomplete bag was there and was made again: what was wrong
    int64_t n_tiles = 0, dim = 0;
};

// Whether OUT/<slide stem>.h5 is a finished bag of this slide for `cfg` and `opt`: it opens (a
// truncated HDF5 file does not), holds `features` of opt.dtype and `coords` with one row per tile
// of the slide's grid (tile_grid_make: the config's level or mpp, tissue, patch size), the same
// coordinates in the same order, the grid's patch_size and patch_level, and the config's encoder
// (the `encoder` attribute: a ResNet type or a ViT preset). Opens the slide for its grid. Which
// weights made the features is not recorded: after changing them, use another OUT.
OutputCheck features_check(const Config& cfg, const std::string& slide_path, const std::string& out_dir,
                           const FeaturesOptions& opt);

// Writes the bag of one slide (tiles from tile_grid_make with the config's level or mpp, tissue
// and grid) atomically (a temporary name, renamed once closed), unless features_check finds it
// complete. `net` must be in eval mode on `device`. OUT is made only when the bag is written, so a
// slide that fails leaves nothing behind.
FeaturesResult features_extract(IPSNet& net, const Config& cfg, const torch::Device& device,
                                const std::string& slide_path, const std::string& out_dir,
                                const FeaturesOptions& opt);

}  // namespace ips
