// ips predict: probabilities per task, the selected patches and their attention, a heat map.
// With --out, one record per image (predict.h); that is what makes it resumable and lets several
// ranks (--nproc-per-node, torchrun) each take a share of the images.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "command.h"
#include "ips/checkpoint.h"
#include "ips/inputs.h"
#include "ips/predict.h"

namespace ips::cli {
namespace {

struct PredictArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    DistArgs dist;
    std::string weights, heatmap, out;
    std::vector<std::string> images;
    bool json = false;
};

void print_human(const nlohmann::json& j) {
    std::printf("%s (N = %lld)\n", j["image"].get<std::string>().c_str(), static_cast<long long>(j["N"].get<int64_t>()));
    for (const auto& [task, p] : j["predictions"].items()) {
        auto v = p.get<std::vector<double>>();
        const auto best = std::max_element(v.begin(), v.end()) - v.begin();
        std::printf("  %-10s argmax %lld (p %.3f):", task.c_str(), static_cast<long long>(best), v[best]);
        for (double x : v) std::printf(" %.3f", x);
        std::printf("\n");
    }
    const auto sel = j["selected"].get<std::vector<int64_t>>();
    const auto sc = j["scores"].get<std::vector<double>>();
    std::printf("  selected (best first):");
    for (size_t k = 0; k < sel.size() && k < 10; ++k) std::printf(" %lld (%.3f)", static_cast<long long>(sel[k]), sc[k]);
    std::printf("%s\n", sel.size() > 10 ? " ..." : "");
    if (j.contains("heatmap")) std::printf("  heat map: %s\n", j["heatmap"].get<std::string>().c_str());
}

void predict_setup(CLI::App* sub) {
    auto a = std::make_shared<PredictArgs>();
    config_args_add(sub, a->config, "YAML config the weights were trained with");
    runtime_args_add(sub, a->runtime);
    sub->add_option("images", a->images, "image files")->required();
    sub->add_option("--weights", a->weights,
                    "ips checkpoint (last.pt / best.pt) or PyTorch state dict in the reference layout")
        ->required();
    sub->add_flag("--json", a->json, "one JSON object per image per line");
    sub->add_option("--heatmap", a->heatmap, "write the attention heat map to this PNG");
    sub->add_option("--out", a->out,
                    "also write each image's JSON record to OUT/<image stem>.json; a rerun keeps complete records");
    dist_args_add(sub, a->dist);
    sub->callback([a] {
        // Ranks share stdout, where their lines would interleave in no fixed order: the records
        // in --out are the result then, the same files one process writes. Checked before any
        // worker starts, so that the launcher says it once.
        if (a->out.empty() && (a->dist.nproc_per_node > 1 || dist_env_read().world_size > 1))
            throw std::runtime_error("predict on several ranks writes its results to files: give --out DIR");
        dist_args_launch(a->dist);
        const Config cfg = config_args_load(a->config);
        if (!cfg.model.is_image)
            throw ConfigError("config key 'is_image': predict reads image files; this config is for features");
        const torch::Device device = runtime_args_apply(a->runtime);
        IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
        weights_load(a->weights, net);
        net_to(net, device);
        if (!a->out.empty()) inputs_stems_distinct(a->images);  // the folder comes with the first record
        // One bad image must not cost the others.
        const DistEnv env = dist_env_read();
        inputs_for_each_share("predict", "images", a->images, env.rank, env.world_size, [&](const std::string& image) {
            // Heat map names follow the whole list, not this rank's share, as one process names them.
            const auto heat = a->heatmap.empty() ? "" : heatmap_path_for(a->heatmap, image, a->images.size());
            nlohmann::json j;
            if (a->out.empty()) {
                j = prediction_to_json(predict_image(net, cfg, device, image, heat));
            } else {
                const PredictionRecord r = predict_recorded(net, cfg, device, image, a->out, heat);
                if (!r.redone_why.empty())
                    std::fprintf(stderr, "ips predict: made %s again; the earlier record was incomplete: %s\n",
                                 image.c_str(), r.redone_why.c_str());
                if (r.already_done)
                    std::fprintf(stderr, "ips predict: %s: already done (%s)\n", image.c_str(), r.path.c_str());
                j = r.json;
            }
            if (a->json) std::printf("%s\n", j.dump().c_str());
            else print_human(j);
            std::fflush(stdout);
        });
    });
}

const CommandRegistration kPredict{
    {"predict", "class probabilities, selected patches and an attention heat map for images", predict_setup, 70}};

}  // namespace
}  // namespace ips::cli
