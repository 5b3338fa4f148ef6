// Prediction for image files: probabilities per task, the selected patches with their attention,
// and an attention heat map (infer_step of step.h on the image's grid).
#pragma once

#include <nlohmann/json.hpp>

#include "ips/inputs.h"
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

// `ips predict --out DIR` keeps one record per image, DIR/<image stem>.json: prediction_to_json
// on one line, as --json prints it. The records are the job's result: one process or several
// ranks each taking a share of the images write the same files, where several ranks' stdout lines
// would interleave. A rerun keeps complete records, so a killed job resumes.
std::string prediction_record_path(const std::string& out_dir, const std::string& image);

// Whether `record` is a finished prediction of `image` with this config: it parses as one JSON
// object naming this image, with N, every task of the config with n_class probabilities, and as
// many scores as selected patches; and, when a heat map is asked for (`heatmap_out`, "" for none),
// it names that file, which is a whole PNG (signature and IEND trailer). The heat map is written
// before the record, each atomically, so a kill leaves no record of a missing heat map. Which
// weights made the prediction is not recorded: after changing them, use another DIR.
OutputCheck prediction_record_check(const std::string& record, const std::string& image, const Config& cfg,
                                    const std::string& heatmap_out);

struct PredictionRecord {
    std::string path;          // the record's file
    nlohmann::json json;       // its content: prediction_to_json of the image
    bool already_done = false;
    std::string redone_why;    // an incomplete record was there and was made again: what was wrong
};

// predict_image with a record in `out_dir`: a complete record is read back rather than predicted
// again; otherwise the prediction is made and its record written atomically (after the heat map).
// `out_dir` (and the heat map's folder) are made only then: an image that fails leaves nothing.
PredictionRecord predict_recorded(IPSNet& net, const Config& cfg, const torch::Device& device,
                                  const std::string& image, const std::string& out_dir,
                                  const std::string& heatmap_out = "");

// BASE for one image; BASE's stem + "_" + the image's stem for several (so they do not collide).
std::string heatmap_path_for(const std::string& base, const std::string& image, size_t n_images);

}  // namespace ips
