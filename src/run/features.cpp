#include "ips/features.h"

#include <filesystem>

#include "ips/feature_bag.h"
#include "ips/progress.h"
#include "ips/slide_source.h"
#include "ips/tissue.h"

namespace ips {
namespace fs = std::filesystem;

void features_config_check(const Config& cfg) {
    if (!cfg.model.is_image) throw ConfigError("config key 'is_image': features are computed from image tiles");
    if (cfg.model.n_chan_in != 3) throw ConfigError("config key 'n_chan_in': slide tiles are RGB, set 3");
    if (cfg.model.pretrained && cfg.model.encoder_weights.empty())
        throw ConfigError("config key 'encoder_weights': 'pretrained' is set but no weights file is given "
                          "(set encoder_weights, or pretrained: false for a random trunk)");
}

FeaturesResult features_extract(IPSNet& net, const Config& cfg, const torch::Device& device,
                                const std::string& slide_path, const std::string& out_dir,
                                const FeaturesOptions& opt) {
    FeaturesResult r;
    r.out = (fs::path(out_dir) / (fs::path(slide_path).stem().string() + ".h5")).string();
    if (fs::exists(r.out)) {
        r.already_done = true;
        return r;
    }
    auto slide = slide_open(slide_path);
    const TileGrid grid = tile_grid_make(*slide, cfg.data);
    auto source = slide_source_make(slide, grid, 3, normalization_of(cfg.data.normalize));
    r.n_tiles = source->size();
    Progress bar(fs::path(slide_path).filename().string(), r.n_tiles, "tile");
    torch::NoGradGuard no_grad;
    torch::Tensor features;  // [N, F], filled batch by batch: one copy of the bag in memory
    for (int64_t start = 0; start < r.n_tiles; start += opt.batch) {
        const int64_t count = std::min(opt.batch, r.n_tiles - start);
        auto emb = net->embed(source_range_on(*source, start, count, device));  // [count, F]
        if (!features.defined()) features = torch::empty({r.n_tiles, emb.size(1)}, opt.dtype);
        features.narrow(0, start, count).copy_(emb);
        if (opt.progress) bar.update(count);
    }
    if (opt.progress) bar.finish();
    FeatureBag bag;
    bag.features = features;
    bag.coords = grid.coords;
    bag.patch_size = grid.patch;
    bag.patch_level = grid.level;
    feature_bag_write(r.out, bag);
    r.dim = features.size(1);
    return r;
}

}  // namespace ips
