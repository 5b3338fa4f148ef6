#include "ips/predict.h"

#include <filesystem>

#include "ips/heatmap.h"
#include "ips/image_io.h"
#include "ips/step.h"

namespace ips {

std::string heatmap_path_for(const std::string& base, const std::string& image, size_t n_images) {
    if (n_images == 1) return base;
    const std::filesystem::path p(base);
    return (p.parent_path() /
            (p.stem().string() + "_" + std::filesystem::path(image).stem().string() + p.extension().string()))
        .string();
}

Prediction predict_image(IPSNet& net, const Config& cfg, const torch::Device& device, const std::string& path,
                         const std::string& heatmap_out) {
    if (!cfg.model.is_image)
        throw ConfigError("config key 'is_image': predict reads image files; this config is for features");
    const torch::Tensor image = image_read(path, cfg.model.n_chan_in);  // [C, H, W] uint8
    Example ex;
    ex.source = image_source_make(image, cfg.data);
    ex.name = path;
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed));
    Inference inf = infer_step(net, cfg, {ex}, device, rng);

    Prediction p;
    p.input = path;
    p.N = ex.source->size();
    for (size_t t = 0; t < cfg.model.tasks.size(); ++t) {
        auto probs = inf.probs[t][0].to(torch::kCPU, torch::kFloat64).contiguous();
        p.task_names.push_back(cfg.model.tasks[t].name);
        p.probs.emplace_back(probs.data_ptr<double>(), probs.data_ptr<double>() + probs.numel());
    }
    const auto score = attention_per_patch(inf.attn)[0].to(torch::kCPU);  // [M]
    const auto idx = inf.batch.idx[0].to(torch::kCPU);
    const auto valid = inf.batch.valid[0].to(torch::kCPU);
    const auto order = std::get<1>(torch::sort(score.masked_fill(valid.logical_not(), -1), 0, /*descending=*/true));
    std::vector<PatchBox> boxes;
    for (int64_t k = 0; k < order.size(0); ++k) {
        const int64_t m = order[k].item<int64_t>();
        if (!valid[m].item<bool>()) continue;
        const int64_t n = idx[m].item<int64_t>();
        p.selected.push_back(n);
        p.scores.push_back(score[m].item<double>());
        const auto origin = ex.source->patch_origin(n);
        boxes.push_back({origin[0], origin[1], cfg.data.patch_size[1], cfg.data.patch_size[0], p.scores.back()});
    }
    if (!heatmap_out.empty()) {
        png_write(heatmap_out, heatmap_render(image, boxes));
        p.heatmap = heatmap_out;
    }
    return p;
}

nlohmann::json prediction_to_json(const Prediction& p) {
    nlohmann::json j;
    j["image"] = p.input;
    j["N"] = p.N;
    for (size_t t = 0; t < p.task_names.size(); ++t) j["predictions"][p.task_names[t]] = p.probs[t];
    j["selected"] = p.selected;
    j["scores"] = p.scores;
    if (!p.heatmap.empty()) j["heatmap"] = p.heatmap;
    return j;
}

}  // namespace ips
