// Prediction for image files: probabilities per task, the selected patches with their attention,
// and an attention heat map (infer_step of step.h on the image's grid).
#pragma once

#include <nlohmann/json.hpp>

#include "ips/model.h"

namespace ips {

struct Prediction {
    std::string input;
    int64_t N = 0;                                  // patches in the image's grid
    std::vector<std::string> task_names;            // config task order
    std::vector<std::vector<double>> probs;         // per task [n_class]
    std::vector<int64_t> selected;                  // grid indices, most attended first
    std::vector<double> scores;                     // their attention (mean over heads and tokens)
    std::string heatmap;                            // PNG written, or empty
};

// Reads the image (any format libvips reads), cuts it into the config's grid, selects, classifies.
// Writes the heat map to `heatmap_out` unless it is empty. Throws naming the file when it cannot
// be read.
Prediction predict_image(IPSNet& net, const Config& cfg, const torch::Device& device, const std::string& path,
                         const std::string& heatmap_out = "");

// {"image", "N", "predictions": {task: [p...]}, "selected", "scores", ["heatmap"]}
nlohmann::json prediction_to_json(const Prediction& p);

// BASE for one image; BASE's stem + "_" + the image's stem for several (so they do not collide).
std::string heatmap_path_for(const std::string& base, const std::string& image, size_t n_images);

}  // namespace ips
