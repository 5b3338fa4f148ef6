#include "ips/input_open.h"

#include <cctype>
#include <filesystem>

#include "ips/feature_bag.h"
#include "ips/image_io.h"
#include "ips/slide_source.h"
#include "ips/tissue.h"
#include "ips/torch_file.h"

namespace ips {
namespace fs = std::filesystem;
namespace {

bool h5_name_is(const std::string& path) {
    std::string ext = fs::path(path).extension().string();
    for (auto& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
    return ext == ".h5" || ext == ".hdf5";
}

bool pt_name_is(const std::string& path) { return fs::path(path).extension() == ".pt"; }

// A bag's tiles are as far apart as they are wide (tile_grid_full with stride = patch): the most
// common step between neighbouring x positions, in level-0 pixels (the smallest could be a
// few pixels where tissue regions were tiled from different offsets). Bags of one column fall
// back to the stored patch size, which is level-0 pixels at patch_level 0, and bags that store
// none (CLAM's features files) to the config's bag_patch_size.
double bag_tile_side(const std::string& path, const FeatureBagInfo& info, const DataOptions& data) {
    const torch::Tensor& coords = info.coords;
    if (coords.defined() && coords.size(0) > 1) {
        const auto xs = std::get<0>(torch::_unique(coords.select(1, 0), /*sorted=*/true));
        if (xs.numel() > 1) return double(std::get<0>(torch::mode(xs.diff())).item<int64_t>());
    }
    if (info.patch_size > 0) return double(info.patch_size);
    if (data.bag_patch_size > 0) return double(data.bag_patch_size);
    throw ConfigError("config key 'bag_patch_size': feature bag '" + path +
                      "' records no tile side and its coordinates do not tell it (one column of tiles); "
                      "set bag_patch_size to the level-0 tile side");
}

// CLAM's pt_files: torch.save of the [N, F] features alone. No coordinates: no spatial outputs.
PatchSourcePtr pt_bag_open(const std::string& path) {
    const c10::IValue root = torch_file_load(path);
    if (!root.isTensor())
        throw std::runtime_error("feature bag '" + path + "': holds " + root.tagKind() +
                                 ", not the [N, F] tensor of CLAM's pt_files");
    const torch::Tensor f = root.toTensor();
    if (f.dim() != 2 || !f.is_floating_point())
        throw std::runtime_error("feature bag '" + path + "': a " + std::string(c10::toString(f.scalar_type())) + " tensor of shape " +
                                 c10::str(f.sizes()) + ", not [N, F] floats");
    return tensor_source_make(f.to(torch::kFloat32).contiguous());
}

OpenedInput bag_input_open(const std::string& path, const DataOptions& data) {
    OpenedInput in;
    in.path = path;
    in.source = bag_source_open(path);
    if (bag_file_of(path) != path || pt_name_is(path)) return in;  // the reference layout and pt files keep no coordinates
    const FeatureBagInfo info = feature_bag_info(path);
    if (!info.coords.defined()) return in;
    in.geometry.xy = info.coords;
    in.geometry.w = in.geometry.h = in.geometry.step_w = in.geometry.step_h = bag_tile_side(path, info, data);
    in.geometry.level = int(info.patch_level);
    in.geometry.w_level = in.geometry.h_level = info.patch_size > 0 ? info.patch_size : int64_t(in.geometry.w);
    if (info.rows > 0) {
        in.width = int64_t(info.coords.select(1, 0).max().item<int64_t>() + in.geometry.w);
        in.height = int64_t(info.coords.select(1, 1).max().item<int64_t>() + in.geometry.h);
    }
    return in;
}

}  // namespace

bool bag_path_is(const std::string& path) { return h5_name_is(bag_file_of(path)) || pt_name_is(path); }

std::string bag_file_of(const std::string& path) {
    const auto hash = path.rfind('#');
    return hash != std::string::npos && h5_name_is(path.substr(0, hash)) ? path.substr(0, hash) : path;
}

std::string input_stem(const std::string& path) {
    const std::string file = bag_file_of(path);
    const std::string stem = fs::path(file).stem().string();
    return file == path ? stem : stem + "_" + path.substr(file.size() + 1);
}

bool input_has_coords(const std::string& path) {
    if (!bag_path_is(path)) return true;
    if (bag_file_of(path) != path || pt_name_is(path)) return false;
    return feature_bag_info(path).coords.defined();
}

PatchSourcePtr bag_source_open(const std::string& path) {
    if (pt_name_is(path)) return pt_bag_open(path);
    const std::string file = bag_file_of(path);
    return file == path ? feature_bag_source_open(file) : feature_bag_source_open(file, path.substr(file.size() + 1));
}

bool image_decoded_whole(const Slide& slide, const DataOptions& data) {
    return slide_levels(slide).size() == 1 && !data.tissue && data.img_size[0] > 0;
}

PatchSourcePtr image_source_open(const SlidePtr& slide, const TileGrid* grid, const Config& cfg) {
    if (image_decoded_whole(*slide, cfg.data)) {  // a photo: decode, resize to the configured size, cut the grid
        auto img = image_resize(image_read(slide_path(*slide), cfg.model.n_chan_in), cfg.data.img_size[0],
                                cfg.data.img_size[1]);
        return image_source_make(img, cfg.data);
    }
    TORCH_CHECK(grid, "image_source_open: a tile grid is needed for ", slide_path(*slide));
    return slide_source_make(slide, *grid, cfg.model.n_chan_in, normalization_of(cfg.data.normalize));
}

OpenedInput input_open(const std::string& path, const Config& cfg) {
    if (bag_path_is(path)) {
        if (cfg.model.is_image)
            throw ConfigError("config key 'is_image': " + path + " is a feature bag; the config is for images");
        return bag_input_open(path, cfg.data);
    }
    if (!cfg.model.is_image)
        throw ConfigError("config key 'is_image': " + path + " is an image; the config is for feature bags");
    OpenedInput in;
    in.path = path;
    in.slide = slide_open(path);
    const SlideLevel& L0 = slide_levels(*in.slide)[0];
    in.width = L0.width;
    in.height = L0.height;
    PatchGeometry& g = in.geometry;
    if (image_decoded_whole(*in.slide, cfg.data)) {
        in.source = image_source_open(in.slide, nullptr, cfg);
        // Grid pixels are pixels of the resized image: scale them back to the file's.
        const double sx = double(L0.width) / double(cfg.data.img_size[1]), sy = double(L0.height) / double(cfg.data.img_size[0]);
        const int64_t N = in.source->size();
        g.xy = torch::empty({N, 2}, torch::kLong);
        auto xy = g.xy.accessor<int64_t, 2>();
        for (int64_t n = 0; n < N; ++n) {
            const auto o = in.source->patch_origin(n);  // (x, y) in the resized image
            xy[n][0] = int64_t(std::llround(double(o[0]) * sx));
            xy[n][1] = int64_t(std::llround(double(o[1]) * sy));
        }
        g.w = double(cfg.data.patch_size[1]) * sx;
        g.h = double(cfg.data.patch_size[0]) * sy;
        g.step_w = double(cfg.data.patch_stride[1]) * sx;
        g.step_h = double(cfg.data.patch_stride[0]) * sy;
        g.w_level = int64_t(std::llround(g.w));
        g.h_level = int64_t(std::llround(g.h));
        return in;
    }
    const TileGrid grid = tile_grid_make(*in.slide, cfg.data);
    in.source = image_source_open(in.slide, &grid, cfg);
    const double ds = slide_levels(*in.slide)[size_t(grid.level)].downsample;
    g.xy = grid.coords;
    g.w = g.h = double(grid.patch) * ds;
    g.step_w = g.step_h = double(grid.stride) * ds;
    g.level = grid.level;
    g.w_level = g.h_level = grid.patch;
    return in;
}

}  // namespace ips
