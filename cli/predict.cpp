// ips predict: probabilities per task, the selected patches and their attention, a heat map.
#include <algorithm>
#include <cstdio>

#include "command.h"
#include "ips/checkpoint.h"
#include "ips/inputs.h"
#include "ips/predict.h"

namespace ips::cli {
namespace {

struct PredictArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    std::string weights, heatmap;
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
    sub->callback([a] {
        const Config cfg = config_args_load(a->config);
        if (!cfg.model.is_image)
            throw ConfigError("config key 'is_image': predict reads image files; this config is for features");
        const torch::Device device = runtime_args_apply(a->runtime);
        IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
        weights_load(a->weights, net);
        net_to(net, device);
        // One bad image must not cost the others.
        inputs_for_each("predict", "images", a->images, [&](const std::string& image) {
            const auto out = a->heatmap.empty() ? "" : heatmap_path_for(a->heatmap, image, a->images.size());
            const auto j = prediction_to_json(predict_image(net, cfg, device, image, out));
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
