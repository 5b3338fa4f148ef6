// ips predict: probabilities per task, the selected patches and their attention, a heat map.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>

#include "commands.h"
#include "ips/checkpoint.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"
#include "ips/train.h"

namespace ips::cli {
namespace {

struct PredictArgs {
    std::string config, weights, heatmap;
    std::vector<std::string> images;
    bool json = false;
};

// OUT.png for one image; OUT_<image stem>.png for several.
std::string heatmap_path(const std::string& base, const std::string& image, size_t n_images) {
    if (n_images == 1) return base;
    std::filesystem::path p(base);
    return (p.parent_path() / (p.stem().string() + "_" + std::filesystem::path(image).stem().string() +
                               p.extension().string()))
        .string();
}

nlohmann::json predict_one(IPSNet& net, const Config& cfg, const torch::Device& device, const std::string& path,
                           const std::string& heatmap_out) {
    torch::Tensor image = image_read(path, cfg.n_chan_in);  // [C, H, W] uint8
    auto source = image_grid_source_make(image, cfg.patch_size, cfg.patch_stride, normalization_from_name(cfg.normalize));
    if (cfg.eager) source = source->to(device);
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed));
    Selection sel = patches_select(net, {source.get()}, select_options(cfg, device, false), rng);
    torch::Tensor attn;
    auto logits = net->forward(patches_gather({source.get()}, sel, device), sel.idx, sel.valid, &attn);
    auto probs = net->probabilities(logits);
    // What the aggregator attended to: attention over the selected patches, mean over heads and tokens.
    auto score = attn.mean(1).mean(1)[0].to(torch::kCPU);  // [M]
    auto idx = sel.idx[0].to(torch::kCPU);
    auto valid = sel.valid[0].to(torch::kCPU);
    auto order = std::get<1>(torch::sort(score.masked_fill(valid.logical_not(), -1), 0, /*descending=*/true));

    nlohmann::json j;
    j["image"] = path;
    j["N"] = source->size();
    for (size_t t = 0; t < cfg.tasks.size(); ++t) {
        auto p = probs[t][0].to(torch::kCPU, torch::kFloat64).contiguous();
        j["predictions"][cfg.tasks[t].name] = std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
    }
    std::vector<int64_t> selected;
    std::vector<double> scores;
    std::vector<PatchBox> boxes;
    for (int64_t k = 0; k < order.size(0); ++k) {
        const int64_t m = order[k].item<int64_t>();
        if (!valid[m].item<bool>()) continue;
        const int64_t n = idx[m].item<int64_t>();
        selected.push_back(n);
        scores.push_back(score[m].item<double>());
        auto origin = source->patch_origin(n);
        boxes.push_back({origin[0], origin[1], cfg.patch_size[1], cfg.patch_size[0], scores.back()});
    }
    j["selected"] = selected;
    j["scores"] = scores;
    if (!heatmap_out.empty()) {
        png_write(heatmap_out, heatmap_render(image, boxes));
        j["heatmap"] = heatmap_out;
    }
    return j;
}

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

}  // namespace

void cmd_predict_setup(CLI::App* sub, GlobalOptions& g) {
    auto args = std::make_shared<PredictArgs>();
    sub->add_option("config", args->config, "YAML config the weights were trained with")->required();
    sub->add_option("images", args->images, "image files")->required();
    sub->add_option("--weights", args->weights, "ips checkpoint (last.pt / best.pt) or PyTorch state dict in the reference layout")->required();
    sub->add_flag("--json", args->json, "one JSON object per image per line");
    sub->add_option("--heatmap", args->heatmap, "write the attention heat map to this PNG");
    global_options_add(sub, g);
    sub->callback([args, &g] {
        Config cfg = config_for_command(args->config, g);
        if (!cfg.is_image) throw ConfigError("config key 'is_image': predict reads image files; this config is for features");
        torch::Device device = global_options_apply(g);
        IPSNet net = net_make(cfg, /*initial_weights=*/false);
        weights_load(args->weights, net);
        net_to(net, device);
        net->eval();
        torch::NoGradGuard no_grad;
        int failures = 0;
        for (const auto& image : args->images) {
            try {
                auto out = args->heatmap.empty() ? "" : heatmap_path(args->heatmap, image, args->images.size());
                auto j = predict_one(net, cfg, device, image, out);
                if (args->json) std::printf("%s\n", j.dump().c_str());
                else print_human(j);
                std::fflush(stdout);
            } catch (const std::exception& e) {  // one bad image must not cost the others
                std::fprintf(stderr, "ips predict: %s\n", e.what());
                ++failures;
            }
        }
        if (failures) throw std::runtime_error(std::to_string(failures) + " of " + std::to_string(args->images.size()) + " images failed");
    });
}

}  // namespace ips::cli
