// ips tiles / ips features: tissue tiles of slides and their feature bags, one file per slide.
// A run over many slides reports a bad slide, goes on with the rest, and fails at the end.
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>

#include "commands.h"
#include "ips/bench.h"
#include "ips/feature_bag.h"
#include "ips/files.h"
#include "ips/image_io.h"
#include "ips/progress.h"
#include "ips/tissue.h"
#include "ips/train.h"

namespace ips::cli {
namespace fs = std::filesystem;
namespace {

// Runs `one` on every slide; a failure is reported and counted, not fatal until the end.
template <typename F>
void for_each_slide(const char* command, const std::vector<std::string>& slides, F one) {
    std::vector<std::string> failed;
    for (const auto& path : slides) {
        try {
            one(path);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ips %s: skipped %s: %s\n", command, path.c_str(), e.what());
            failed.push_back(path);
        }
    }
    if (!failed.empty()) {
        std::string list;
        for (const auto& f : failed) list += "\n  " + f;
        throw std::runtime_error(std::to_string(failed.size()) + " of " + std::to_string(slides.size()) +
                                 " slides failed:" + list);
    }
}

// Outputs are named by the file's stem: two slides with one stem would overwrite each other (or,
// with `features`, the second would be skipped as done).
void stems_must_differ(const std::vector<std::string>& slides) {
    std::map<std::string, std::string> seen;
    for (const auto& s : slides) {
        auto [it, fresh] = seen.emplace(fs::path(s).stem().string(), s);
        if (!fresh) throw std::runtime_error("'" + it->second + "' and '" + s + "' would write the same output files (" +
                                             it->first + ".*); rename one or run them separately");
    }
}

struct TilesArgs {
    std::vector<std::string> slides;
    int64_t patch = 256, stride = 0;
    int level = 0;
    double mpp = 0, min_tissue = 0.01;
    int64_t thumb = 2048;
};

void tiles_one(const TilesArgs& a, const std::string& out_dir, const std::string& path) {
    auto slide = slide_open(path);
    const int64_t stride = a.stride > 0 ? a.stride : a.patch;
    const int level = a.mpp > 0 ? slide_level_for_mpp(*slide, a.mpp) : a.level;
    if (level >= int(slide_levels(*slide).size()))
        throw std::runtime_error("has " + std::to_string(slide_levels(*slide).size()) + " level(s), not level " +
                                 std::to_string(level));
    TissueMask tissue = tissue_mask_make(*slide, a.thumb);
    TileGrid grid = tile_grid_tissue(*slide, tissue, level, a.patch, stride, a.min_tissue);
    const std::string stem = (fs::path(out_dir) / fs::path(path).stem()).string();
    std::string csv = "x,y\n";
    const auto c = grid.coords.accessor<int64_t, 2>();
    for (int64_t n = 0; n < grid.coords.size(0); ++n) csv += std::to_string(c[n][0]) + "," + std::to_string(c[n][1]) + "\n";
    text_write_atomic(stem + ".csv", csv);
    png_write(stem + ".png", tissue_overlay(*slide, tissue, grid));
    const auto& L = slide_levels(*slide);
    nlohmann::json j = {{"slide", path},        {"width", L[0].width},        {"height", L[0].height},
                        {"levels", L.size()},   {"mpp", slide_mpp(*slide)},   {"level", level},
                        {"downsample", L[level].downsample}, {"patch_size", a.patch}, {"stride", stride},
                        {"otsu_threshold", tissue.threshold}, {"min_tissue", a.min_tissue},
                        {"tiles", grid.coords.size(0)}, {"grid_tiles", grid.rows * grid.cols}};
    text_write_atomic(stem + ".json", j.dump(2) + "\n");
    std::printf("%s: %lld of %lld tiles with tissue (level %d, %lldx%lld px), Otsu threshold %d -> %s.{csv,png,json}\n",
                path.c_str(), static_cast<long long>(grid.coords.size(0)), static_cast<long long>(grid.rows * grid.cols),
                level, static_cast<long long>(a.patch), static_cast<long long>(a.patch), tissue.threshold, stem.c_str());
}

struct FeaturesArgs {
    std::string config;
    std::vector<std::string> slides;
    std::string dtype = "float16";
    int64_t batch = 64;
};

void features_one(const FeaturesArgs& a, const Config& cfg, IPSNet& net, const torch::Device& device,
                  const std::string& out_dir, const std::string& path) {
    const fs::path out = fs::path(out_dir) / (fs::path(path).stem().string() + ".h5");
    if (fs::exists(out)) {  // resumable: written files are complete (they are renamed into place)
        std::printf("%s: already done (%s)\n", path.c_str(), out.c_str());
        return;
    }
    auto slide = slide_open(path);
    TileGrid grid = tile_grid_make(*slide, cfg);
    auto source = slide_source_make(slide, grid, 3, normalization_from_name(cfg.normalize));
    const int64_t N = source->size();
    Progress bar(fs::path(path).filename().string(), N, "tile");
    torch::NoGradGuard no_grad;
    torch::Tensor features;  // [N, F], filled batch by batch: one copy of the bag in memory
    for (int64_t start = 0; start < N; start += a.batch) {
        const int64_t count = std::min(a.batch, N - start);
        auto emb = net->embed(source->read_range(start, count).to(device));  // [count, F]
        if (!features.defined())
            features = torch::empty({N, emb.size(1)}, a.dtype == "float16" ? torch::kHalf : torch::kFloat32);
        features.narrow(0, start, count).copy_(emb);
        bar.update(count);
    }
    bar.finish();
    FeatureBag bag;
    bag.features = features;
    bag.coords = grid.coords;
    bag.patch_size = grid.patch;
    bag.patch_level = grid.level;
    feature_bag_write(out.string(), bag);
    std::printf("%s: %lld x %lld features (%s) -> %s\n", path.c_str(), static_cast<long long>(N),
                static_cast<long long>(bag.features.size(1)), a.dtype.c_str(), out.c_str());
}

struct ReadBenchArgs {
    std::string slide;
    int64_t patch = 256, tiles = 2000, chunk = 256;
    int level = 0;
    bool json = false;
};

// Patches/s and peak resident memory of reading random tiles: random order defeats read-ahead
// and tile caches, as a shuffled selection does.
void read_bench(const ReadBenchArgs& a) {
    auto slide = slide_open(a.slide);
    TileGrid grid = tile_grid_full(*slide, a.level, a.patch, a.patch);
    auto source = slide_source_make(slide, grid, 3, normalization_from_name("imagenet"));
    const int64_t n = std::min(a.tiles, source->size());
    auto order = torch::randperm(source->size(), torch::kLong).narrow(0, 0, n);
    const int64_t rss_before = peak_rss_bytes();
    const auto start = std::chrono::steady_clock::now();
    Progress bar("read", n, "tile");
    for (int64_t s = 0; s < n; s += a.chunk) {
        const int64_t count = std::min(a.chunk, n - s);
        source->read(order.narrow(0, s, count));
        bar.update(count);
    }
    bar.finish();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const auto& L = slide_levels(*slide)[0];
    nlohmann::json j = {{"slide", a.slide}, {"width", L.width}, {"height", L.height}, {"level", a.level},
                        {"patch", a.patch}, {"grid_tiles", source->size()}, {"tiles_read", n},
                        {"patches_per_s", n / seconds}, {"seconds", seconds},
                        {"peak_rss_gib", peak_rss_bytes() / double(1 << 30)},
                        {"peak_rss_gib_before_reading", rss_before / double(1 << 30)},
                        {"threads", at::get_num_threads()}};
    std::printf("%s: %lld random %lldx%lld tiles of %lld in %.1f s: %.0f patches/s, peak RSS %.3f GiB\n", a.slide.c_str(),
                static_cast<long long>(n), static_cast<long long>(a.patch), static_cast<long long>(a.patch),
                static_cast<long long>(source->size()), seconds, n / seconds, j["peak_rss_gib"].get<double>());
    if (a.json) std::printf("%s\n", j.dump().c_str());
}

}  // namespace

void cmd_read_bench_setup(CLI::App* sub, GlobalOptions& g) {
    auto a = std::make_shared<ReadBenchArgs>();
    sub->add_option("slide", a->slide, "slide or image")->required();
    sub->add_option("--patch", a->patch, "tile side (default 256)");
    sub->add_option("--level", a->level, "pyramid level (default 0)");
    sub->add_option("--tiles", a->tiles, "tiles to read, in random order (default 2000)");
    sub->add_option("--chunk", a->chunk, "tiles per read call (default 256)");
    sub->add_flag("--json", a->json, "print one JSON object on the last line");
    global_options_add(sub, g);
    sub->callback([a, &g] {
        global_options_apply(g);
        read_bench(*a);
    });
}

void cmd_tiles_setup(CLI::App* sub, GlobalOptions& g) {
    auto a = std::make_shared<TilesArgs>();
    sub->add_option("slides", a->slides, "slides or images")->required();
    sub->add_option("--patch", a->patch, "tile side in pixels of the level (default 256)");
    sub->add_option("--stride", a->stride, "tile stride (default: the tile side)");
    sub->add_option("--level", a->level, "pyramid level (default 0)");
    sub->add_option("--mpp", a->mpp, "or: the coarsest level no coarser than this many µm per pixel");
    sub->add_option("--min-tissue", a->min_tissue, "fraction of a tile that must be tissue (default 0.01)");
    sub->add_option("--thumb", a->thumb, "longer side of the thumbnail Otsu runs on (default 2048)");
    global_options_add(sub, g);
    sub->callback([a, &g] {
        global_options_apply(g);
        const std::string out = g.out.empty() ? "tiles" : g.out;
        fs::create_directories(out);
        stems_must_differ(a->slides);
        for_each_slide("tiles", a->slides, [&](const std::string& path) { tiles_one(*a, out, path); });
    });
}

void cmd_features_setup(CLI::App* sub, GlobalOptions& g) {
    auto a = std::make_shared<FeaturesArgs>();
    sub->add_option("config", a->config, "YAML config: encoder (enc_type, encoder_weights), patch_size, slide_level / "
                                         "slide_mpp, tissue, normalize")->required();
    sub->add_option("slides", a->slides, "slides or images")->required();
    sub->add_option("--dtype", a->dtype, "float16 | float32 (default float16)")->check(CLI::IsMember({"float16", "float32"}));
    sub->add_option("--batch", a->batch, "tiles per encoder call (default 64)");
    global_options_add(sub, g);
    sub->callback([a, &g] {
        Config cfg = config_for_command(a->config, g);
        if (!cfg.is_image) throw ConfigError("config key 'is_image': features are computed from image tiles");
        if (cfg.n_chan_in != 3) throw ConfigError("config key 'n_chan_in': slide tiles are RGB, set 3");
        // Features of random weights look like features; refuse rather than fill a cohort with them.
        if (cfg.pretrained && cfg.encoder_weights.empty())
            throw ConfigError("config key 'encoder_weights': 'pretrained' is set but no weights file is given "
                              "(set encoder_weights, or pretrained: false for a random trunk)");
        stems_must_differ(a->slides);
        const torch::Device device = global_options_apply(g);
        IPSNet net = net_make(cfg);
        net_to(net, device);
        net->eval();
        const std::string out = g.out.empty() ? "features" : g.out;
        fs::create_directories(out);
        for_each_slide("features", a->slides,
                       [&](const std::string& path) { features_one(*a, cfg, net, device, out, path); });
    });
}

}  // namespace ips::cli
