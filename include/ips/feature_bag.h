// Feature bags in HDF5: one row of pre-extracted features per tile.
//
// Two layouts are read:
//  * per slide (ips, CLAM, TRIDENT): a file with datasets `features` [N, F] (float16 or float32)
//    and `coords` [N, 2] (int, level-0 top-left x, y). The tile side comes from the attributes
//    each writer leaves on `coords` (or the root): ips and CLAM's patch files `patch_size` and
//    `patch_level`; TRIDENT `patch_size_level0`; CLAM's features files none at all (the side is
//    then the coordinates' step, input_open.h). ips and TRIDENT name the encoder on `features`;
//  * the reference IPS's single file: a group per slide holding `img` [N, F] and an attribute
//    `label` on the group.
// Rows are read lazily: a bag source keeps the file open and reads the rows asked for, so a
// 250k x 2048 bag never has to sit in memory (eager mode loads it once instead).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ips/patch_source.h"

namespace ips {

struct FeatureBag {
    torch::Tensor features;    // [N, F] float16 or float32
    torch::Tensor coords;      // [N, 2] int64, level-0 top-left (x, y); may be undefined
    int64_t patch_size = 0;    // tile side in level-`patch_level` pixels; 0: not recorded
    int64_t patch_level = 0;
    std::string encoder;       // what made the features (attribute `encoder`, with `dim`); may be empty
};

// Writes the per-slide layout to a temporary name and renames it into place, so a crash never
// leaves a partial file that a resumed `ips features` would take as done. Throws naming the file.
void feature_bag_write(const std::string& path, const FeatureBag& bag);

// Reads a per-slide file whole (features keep their stored dtype). Throws naming the file and the
// missing dataset / attribute for files of another layout.
FeatureBag feature_bag_read(const std::string& path);

// What a per-slide file holds, without reading its features (is a bag there complete?). Throws
// as feature_bag_read does: a truncated file, a missing dataset or attribute, coords of other rows.
struct FeatureBagInfo {
    int64_t rows = 0, dim = 0;
    torch::ScalarType dtype = torch::kFloat32;  // as feature_bag_read gives the features
    torch::Tensor coords;                       // [rows, 2] int64; undefined when the file has none
    int64_t patch_size = 0, patch_level = 0;   // patch_size 0: the file records no tile side
    std::string encoder;
};
FeatureBagInfo feature_bag_info(const std::string& path);

// Lazy patch source over the rows of `features` (per-slide layout, group "") or of `<group>/img`
// (reference layout). read() returns float32 [K, F] on the CPU; to(device) loads the whole bag
// onto the device (eager sequential mode). Throws naming the file (and group) when missing.
PatchSourcePtr feature_bag_source_open(const std::string& path, const std::string& group = "");

// The reference layout: the groups of a single file, in file order, with their `label` attribute.
struct BagGroup {
    std::string name;
    int64_t label = 0;
    int64_t n_rows = 0;
};
std::vector<BagGroup> feature_bag_groups(const std::string& path);

// Writes one group of the reference layout (creating the file if needed); for tests and converters.
void feature_bag_group_write(const std::string& path, const std::string& group, const torch::Tensor& img,
                             int64_t label);

}  // namespace ips
