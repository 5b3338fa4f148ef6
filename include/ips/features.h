// `ips features`: every tile of a slide through the configured trunk, one HDF5 feature bag per
// slide (feature_bag.h layout: `features` N x F, `coords` N x 2 level-0, patch_size, patch_level).
#pragma once

#include "ips/model.h"

namespace ips {

struct FeaturesOptions {
    torch::ScalarType dtype = torch::kHalf;  // float16 or float32 features on disk
    int64_t batch = 64;                      // tiles per encoder call
    bool progress = true;
};

// Throws ConfigError naming the key when the config cannot make features of slide tiles: it must
// be an RGB image encoder, and `pretrained` without an `encoder_weights` file is refused (features
// of random weights look like features).
void features_config_check(const Config& cfg);

struct FeaturesResult {
    std::string out;        // OUT/<slide stem>.h5
    bool already_done = false;
    int64_t n_tiles = 0, dim = 0;
};

// Writes the bag of one slide (tiles from tile_grid_make with the config's level or mpp, tissue
// and grid) atomically; a bag already there is complete (renamed into place) and is not redone.
// `net` must be in eval mode on `device`.
FeaturesResult features_extract(IPSNet& net, const Config& cfg, const torch::Device& device,
                                const std::string& slide_path, const std::string& out_dir,
                                const FeaturesOptions& opt);

}  // namespace ips
