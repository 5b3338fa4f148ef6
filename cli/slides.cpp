// ips tiles / ips features / ips bench-read: tissue tiles of slides, their feature bags, and how
// fast slides are read. A run over many slides reports a bad slide, goes on, and fails at the end;
// it may run as several ranks (--nproc-per-node, torchrun), each taking its share of the slides
// (inputs.h), and a rerun keeps the outputs that are complete.
#include <cstdio>
#include <filesystem>

#include "command.h"
#include "ips/checkpoint.h"
#include "ips/features.h"
#include "ips/inputs.h"
#include "ips/read_bench.h"
#include "ips/tiles.h"
#include "ips/vit.h"

namespace ips::cli {
namespace {

// An earlier output that fails its check is made again; the user hears why.
void redone_report(const char* command, const std::string& path, const std::string& why) {
    if (!why.empty()) std::fprintf(stderr, "ips %s: made %s again; the earlier output was incomplete: %s\n", command,
                                   path.c_str(), why.c_str());
}

struct TilesArgs {
    RuntimeArgs runtime;
    DistArgs dist;
    std::vector<std::string> slides;
    std::string out = "tiles";
    TilesOptions opt;
};

void tiles_setup(CLI::App* sub) {
    auto a = std::make_shared<TilesArgs>();
    sub->add_option("slides", a->slides, "slides or images")->required();
    sub->add_option("--out", a->out, "output folder (default tiles)");
    sub->add_option("--patch", a->opt.patch, "tile side in pixels of the level (default 256)");
    sub->add_option("--stride", a->opt.stride, "tile stride (default: the tile side)");
    sub->add_option("--level", a->opt.level, "pyramid level (default 0)");
    sub->add_option("--mpp", a->opt.mpp, "or: the coarsest level no coarser than this many µm per pixel");
    sub->add_option("--min-tissue", a->opt.min_tissue, "fraction of a tile that must be tissue (default 0.01)");
    sub->add_option("--thumb", a->opt.thumb, "longer side of the thumbnail Otsu runs on (default 2048)");
    runtime_args_add(sub, a->runtime, /*with_device=*/false);
    dist_args_add(sub, a->dist);
    sub->callback([a] {
        dist_args_launch(a->dist);
        runtime_args_apply(a->runtime);
        inputs_stems_distinct(a->slides);  // the folder is made by the first slide that succeeds
        const DistEnv env = dist_env_read();
        inputs_for_each_share("tiles", "slides", a->slides, env.rank, env.world_size, [&](const std::string& path) {
            const TilesResult r = tiles_write(a->opt, a->out, path);
            redone_report("tiles", path, r.redone_why);
            if (r.already_done) std::printf("%s: already done (%s.{csv,png,json})\n", path.c_str(), r.stem.c_str());
            else
                std::printf("%s: %lld of %lld tiles with tissue (level %d, %lldx%lld px), Otsu threshold %d -> %s.{csv,png,json}\n",
                            path.c_str(), static_cast<long long>(r.tiles), static_cast<long long>(r.grid_tiles),
                            r.level, static_cast<long long>(a->opt.patch), static_cast<long long>(a->opt.patch),
                            r.threshold, r.stem.c_str());
            std::fflush(stdout);  // whole lines, when several ranks share the output
        });
    });
}

struct FeaturesArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    DistArgs dist;
    std::vector<std::string> slides;
    std::string out = "features";
    std::string encoder, weights;
    FeaturesOptions opt;
};

void features_setup(CLI::App* sub) {
    auto a = std::make_shared<FeaturesArgs>();
    config_args_add(sub, a->config,
                    "YAML config: encoder (enc_type, vit, encoder_weights), patch_size, slide_level / slide_mpp, tissue, normalize");
    runtime_args_add(sub, a->runtime);
    sub->add_option("slides", a->slides, "slides or images")->required();
    sub->add_option("--out", a->out, "output folder (default features)");
    sub->add_option("--dtype", a->opt.dtype, "float16 | float32 (default float16)")
        ->transform(CLI::CheckedTransformer(std::map<std::string, torch::ScalarType>{{"float16", torch::kHalf},
                                                                                     {"float32", torch::kFloat32}}));
    sub->add_option("--batch", a->opt.batch, "tiles per encoder call (default 64)");
    sub->add_option("--encoder", a->encoder,
                    "resnet18 | resnet34 | resnet50 | a ViT preset (" + vit_preset_names() +
                        "): sets enc_type (and for a ViT its tile side, mpp, normalisation and D; --set overrides them)");
    sub->add_option("--weights", a->weights, "the encoder's weight file (torch.save or safetensors): encoder_weights");
    dist_args_add(sub, a->dist);
    sub->callback([a] {
        dist_args_launch(a->dist);
        ConfigArgs config = a->config;
        auto sets = features_encoder_overrides(a->encoder, a->weights);
        sets.insert(sets.end(), config.sets.begin(), config.sets.end());
        config.sets = std::move(sets);
        const Config cfg = config_args_load(config);
        features_config_check(cfg);
        inputs_stems_distinct(a->slides);
        const torch::Device device = runtime_args_apply(a->runtime);
        IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
        initial_weights_apply(net);
        net_to(net, device);
        net->eval();
        const DistEnv env = dist_env_read();
        inputs_for_each_share("features", "slides", a->slides, env.rank, env.world_size, [&](const std::string& path) {
            const FeaturesResult r = features_extract(net, cfg, device, path, a->out, a->opt);
            redone_report("features", path, r.redone_why);
            if (r.already_done) std::printf("%s: already done (%s)\n", path.c_str(), r.out.c_str());
            else
                std::printf("%s: %lld x %lld features (%s) -> %s\n", path.c_str(), static_cast<long long>(r.n_tiles),
                            static_cast<long long>(r.dim), a->opt.dtype == torch::kHalf ? "float16" : "float32",
                            r.out.c_str());
            std::fflush(stdout);
        });
    });
}

struct ReadBenchArgs {
    RuntimeArgs runtime;
    std::string slide;
    ReadBenchOptions opt;
    bool json = false;
};

void read_bench_setup(CLI::App* sub) {
    auto a = std::make_shared<ReadBenchArgs>();
    sub->add_option("slide", a->slide, "slide or image")->required();
    sub->add_option("--patch", a->opt.patch, "tile side (default 256)");
    sub->add_option("--level", a->opt.level, "pyramid level (default 0)");
    sub->add_option("--tiles", a->opt.tiles, "tiles to read, in random order (default 2000)");
    sub->add_option("--chunk", a->opt.chunk, "tiles per read call (default 256)");
    sub->add_flag("--json", a->json, "print one JSON object on the last line");
    runtime_args_add(sub, a->runtime, /*with_device=*/false);
    sub->callback([a] {
        runtime_args_apply(a->runtime);
        const nlohmann::json j = read_bench_run(a->slide, a->opt);
        std::printf("%s: %lld random %lldx%lld tiles of %lld in %.1f s: %.0f patches/s, peak RSS %.3f GiB\n",
                    a->slide.c_str(), static_cast<long long>(j["tiles_read"].get<int64_t>()),
                    static_cast<long long>(a->opt.patch), static_cast<long long>(a->opt.patch),
                    static_cast<long long>(j["grid_tiles"].get<int64_t>()), j["seconds"].get<double>(),
                    j["patches_per_s"].get<double>(), j["peak_rss_gib"].get<double>());
        if (a->json) std::printf("%s\n", j.dump().c_str());
    });
}

const CommandRegistration kTiles{
    {"tiles", "tissue tiles of slides: coordinates (CSV), thumbnail with mask and tiles (PNG)", tiles_setup, 20}};
const CommandRegistration kFeatures{
    {"features", "embed every tissue tile of slides with a trunk: one HDF5 feature bag per slide", features_setup, 30}};
const CommandRegistration kReadBench{
    {"bench-read", "patches/s and peak memory of reading random tiles from a slide or image", read_bench_setup, 95}};

}  // namespace
}  // namespace ips::cli
