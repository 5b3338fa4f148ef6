#include "ips/predict.h"

#include <filesystem>

#include "ips/files.h"
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
        // Made only now, so that an image that cannot be read leaves no folder behind.
        const auto folder = std::filesystem::path(heatmap_out).parent_path();
        if (!folder.empty()) std::filesystem::create_directories(folder);
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

std::string prediction_record_path(const std::string& out_dir, const std::string& image) {
    return (std::filesystem::path(out_dir) / (std::filesystem::path(image).stem().string() + ".json")).string();
}

namespace {

// png_write renames a whole file into place, so a PNG without its trailer was damaged afterwards.
bool png_whole(const std::string& path) {
    static const std::string signature("\x89PNG\r\n\x1a\n", 8), trailer("\0\0\0\0IEND\xae\x42\x60\x82", 12);
    const std::string bytes = file_read(path);
    return bytes.size() >= signature.size() + trailer.size() && bytes.compare(0, 8, signature) == 0 &&
           bytes.compare(bytes.size() - trailer.size(), trailer.size(), trailer) == 0;
}

}  // namespace

OutputCheck prediction_record_check(const std::string& record, const std::string& image, const Config& cfg,
                                    const std::string& heatmap_out) {
    std::error_code ec;
    if (!std::filesystem::exists(record, ec)) return {};
    auto bad = [&](const std::string& why) { return OutputCheck{OutputCheck::incomplete, record + ": " + why}; };
    try {
        const auto j = nlohmann::json::parse(file_read(record));
        if (!j.is_object()) return bad("not a JSON object");
        if (j.at("image").get<std::string>() != image)
            return bad("the record of " + j["image"].dump() + ", not of " + image);
        if (!j.at("N").is_number_integer()) return bad("N is not an integer");
        for (const auto& task : cfg.model.tasks) {
            const auto p = j.at("predictions").at(task.name).get<std::vector<double>>();
            if (static_cast<int>(p.size()) != cfg.model.n_class)
                return bad("task '" + task.name + "' has " + std::to_string(p.size()) + " probabilities, not " +
                           std::to_string(cfg.model.n_class));
        }
        if (j.at("predictions").size() != cfg.model.tasks.size())
            return bad("predictions of other tasks than the config's");
        if (j.at("selected").get<std::vector<int64_t>>().size() != j.at("scores").get<std::vector<double>>().size())
            return bad("as many scores as selected patches expected");
        const std::string heatmap = j.value("heatmap", "");
        if (heatmap != heatmap_out)
            return bad("heat map " + (heatmap.empty() ? "(none)" : heatmap) + ", not " +
                       (heatmap_out.empty() ? "(none)" : heatmap_out));
        if (!heatmap.empty() && !png_whole(heatmap)) return bad("its heat map " + heatmap + " is not a whole PNG");
    } catch (const std::exception& e) {
        return bad(e.what());
    }
    return {OutputCheck::complete, ""};
}

PredictionRecord predict_recorded(IPSNet& net, const Config& cfg, const torch::Device& device,
                                  const std::string& image, const std::string& out_dir,
                                  const std::string& heatmap_out) {
    PredictionRecord r;
    r.path = prediction_record_path(out_dir, image);
    const OutputCheck before = prediction_record_check(r.path, image, cfg, heatmap_out);
    if (before.state == OutputCheck::complete) {
        r.json = nlohmann::json::parse(file_read(r.path));
        r.already_done = true;
        return r;
    }
    r.redone_why = before.why;
    r.json = prediction_to_json(predict_image(net, cfg, device, image, heatmap_out));
    std::filesystem::create_directories(out_dir);  // with the first record: a failed image leaves no folder
    text_write_atomic(r.path, r.json.dump() + "\n");
    return r;
}

}  // namespace ips
