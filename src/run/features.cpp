#include "ips/features.h"

#include <filesystem>

#include "ips/feature_bag.h"
#include "ips/progress.h"
#include "ips/slide_source.h"
#include "ips/tissue.h"
#include "ips/vit.h"

namespace ips {
namespace fs = std::filesystem;
namespace {

std::string bag_path_of(const std::string& slide_path, const std::string& out_dir) {
    return (fs::path(out_dir) / (fs::path(slide_path).stem().string() + ".h5")).string();
}

std::string dtype_name(torch::ScalarType t) { return t == torch::kHalf ? "float16" : "float32"; }

// features_check for the slide's grid, already made; fills `info` for a complete bag.
OutputCheck check_of(const std::string& bag, const TileGrid& grid, const std::string& encoder,
                     const FeaturesOptions& opt, FeatureBagInfo& info) {
    std::error_code ec;
    if (!fs::exists(bag, ec)) return {};
    auto bad = [&](const std::string& why) { return OutputCheck{OutputCheck::incomplete, why}; };
    try {
        info = feature_bag_info(bag);
    } catch (const std::exception& e) {
        return bad(e.what());  // feature_bag's messages name the file
    }
    const std::string name = "feature bag '" + bag + "': ";
    const int64_t tiles = grid.coords.size(0);
    if (info.dtype != opt.dtype)
        return bad(name + "holds " + dtype_name(info.dtype) + ", not " + dtype_name(opt.dtype));
    if (info.rows != tiles)
        return bad(name + "has " + std::to_string(info.rows) + " rows; the slide has " + std::to_string(tiles) +
                   " tiles");
    if (!info.coords.defined() || !torch::equal(info.coords, grid.coords))
        return bad(name + "its coords are not the slide's tiles");
    if (info.patch_size != grid.patch || info.patch_level != grid.level)
        return bad(name + "made with patch_size " + std::to_string(info.patch_size) + " at level " +
                   std::to_string(info.patch_level) + ", not " + std::to_string(grid.patch) + " at level " +
                   std::to_string(grid.level));
    if (tiles > 0 && info.dim < 1) return bad(name + "its features have no columns");
    if (!info.encoder.empty() && info.encoder != encoder)
        return bad(name + "made by the encoder '" + info.encoder + "', not '" + encoder + "'");
    return {OutputCheck::complete, ""};
}

std::string yaml_quoted(const std::string& s) {
    std::string q = "'";
    for (char c : s) q += c == '\'' ? std::string("''") : std::string(1, c);
    return q + "'";
}

}  // namespace

std::vector<std::string> features_encoder_overrides(const std::string& encoder, const std::string& weights) {
    std::vector<std::string> sets;
    if (encoder == "resnet18" || encoder == "resnet34" || encoder == "resnet50") {
        sets.push_back("enc_type=" + encoder);
    } else if (!encoder.empty()) {
        const VitPreset* p = nullptr;
        try {
            p = &vit_preset(encoder);
        } catch (const std::invalid_argument& e) {
            throw ConfigError(std::string("encoder: ") + e.what());
        }
        const std::string side = std::to_string(p->resize);
        sets.insert(sets.end(), {"enc_type=vit", "vit=" + encoder, "D=" + std::to_string(vit_out_dim(p->vit)), "n_chan_in=3",
                                 "normalize=none", "patch_size=" + side, "patch_stride=" + side,
                                 "slide_mpp=" + std::to_string(p->mpp), "slide_level=0"});
    }
    if (!weights.empty()) sets.insert(sets.end(), {"encoder_weights=" + yaml_quoted(weights), "pretrained=true"});
    return sets;
}

void features_config_check(const Config& cfg) {
    if (!cfg.model.is_image) throw ConfigError("config key 'is_image': features are computed from image tiles");
    if (cfg.model.n_chan_in != 3) throw ConfigError("config key 'n_chan_in': slide tiles are RGB, set 3");
    if (cfg.model.pretrained && cfg.model.encoder_weights.empty())
        throw ConfigError("config key 'encoder_weights': 'pretrained' is set but no weights file is given "
                          "(set encoder_weights, or pretrained: false for a random trunk)");
}

OutputCheck features_check(const Config& cfg, const std::string& slide_path, const std::string& out_dir,
                           const FeaturesOptions& opt) {
    const std::string bag = bag_path_of(slide_path, out_dir);
    std::error_code ec;
    if (!fs::exists(bag, ec)) return {};  // without opening the slide
    auto slide = slide_open(slide_path);
    FeatureBagInfo info;
    return check_of(bag, tile_grid_make(*slide, cfg.data), encoder_name(cfg.model), opt, info);
}

FeaturesResult features_extract(IPSNet& net, const Config& cfg, const torch::Device& device,
                                const std::string& slide_path, const std::string& out_dir,
                                const FeaturesOptions& opt) {
    FeaturesResult r;
    r.out = bag_path_of(slide_path, out_dir);
    auto slide = slide_open(slide_path);
    const TileGrid grid = tile_grid_make(*slide, cfg.data);
    FeatureBagInfo info;
    const OutputCheck before = check_of(r.out, grid, encoder_name(cfg.model), opt, info);
    if (before.state == OutputCheck::complete) {
        r.already_done = true;
        r.n_tiles = info.rows;
        r.dim = info.dim;
        return r;
    }
    r.redone_why = before.why;
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
        if (opt.on_batch) opt.on_batch(start + count, r.n_tiles);
    }
    if (opt.progress) bar.finish();
    FeatureBag bag;
    bag.features = features;
    bag.coords = grid.coords;
    bag.patch_size = grid.patch;
    bag.patch_level = grid.level;
    bag.encoder = encoder_name(cfg.model);
    fs::create_directories(out_dir);  // only now: a slide that cannot be read leaves no folder
    feature_bag_write(r.out, bag);
    r.dim = features.size(1);
    return r;
}

}  // namespace ips
