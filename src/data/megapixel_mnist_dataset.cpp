// Dataset over a generated Megapixel MNIST folder: labels.csv is read once, each PNG is decoded only
// when its example is asked for, so a split never sits in memory as a whole.
#include "ips/megapixel_mnist_dataset.h"

#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "ips/image_io.h"
#include "ips/megapixel_mnist.h"
#include "ips/dataset.h"

namespace fs = std::filesystem;

namespace ips {
namespace {

enum class MnistTask { majority, max, top, multi };

std::vector<MnistTask> tasks_resolve(const Config& cfg) {
    std::vector<MnistTask> out;
    for (size_t t = 0; t < cfg.model.tasks.size(); ++t) {
        const Task& task = cfg.model.tasks[t];
        const std::string key = "config key 'tasks' (task " + std::to_string(t) + " '" + task.name + "')";
        MnistTask kind;
        if (task.name == "majority") kind = MnistTask::majority;
        else if (task.name == "max") kind = MnistTask::max;
        else if (task.name == "top") kind = MnistTask::top;
        else if (task.name == "multi") kind = MnistTask::multi;
        else
            throw ConfigError(key + ": megapixel_mnist has no such task (known: majority, max, top, multi)");
        const ActFn want = kind == MnistTask::multi ? ActFn::sigmoid : ActFn::softmax;
        if (task.act_fn != want)
            throw ConfigError(key + ": act_fn must be " + (want == ActFn::sigmoid ? "sigmoid" : "softmax") +
                              " for this task");
        out.push_back(kind);
    }
    return out;
}

// Throws ConfigError naming N when the grid of an H x W image does not hold cfg.data.N patches.
void grid_check(const Config& cfg, int64_t H, int64_t W, const std::string& origin) {
    int64_t n = 0;
    try {
        auto g = grid_shape(H, W, cfg.data.patch_size, cfg.data.patch_stride);
        n = g[0] * g[1];
    } catch (const std::invalid_argument& e) {
        throw ConfigError("config key 'patch_size': " + std::string(e.what()) + " (" + origin + ")");
    }
    if (n != cfg.data.N)
        throw ConfigError("config key 'N': is " + std::to_string(cfg.data.N) + ", but the " + std::to_string(H) +
                          "x" + std::to_string(W) + " images of " + origin + " with patch " +
                          std::to_string(cfg.data.patch_size[0]) + "x" + std::to_string(cfg.data.patch_size[1]) +
                          " and stride " + std::to_string(cfg.data.patch_stride[0]) + "x" +
                          std::to_string(cfg.data.patch_stride[1]) + " give N = " + std::to_string(n));
}

struct MegapixelMnistDataset : Dataset {
    MegapixelMnistDataset(const Config& c, const std::string& split_) : cfg(c), split(split_) {
        if (split != "train" && split != "test")
            throw std::invalid_argument("megapixel_mnist: split must be train or test, got '" + split + "'");
        if (cfg.data.data_dir.empty()) throw ConfigError("config key 'data_dir': empty; megapixel_mnist needs the generated folder");
        if (!cfg.model.is_image) throw ConfigError("config key 'is_image': megapixel_mnist holds images");
        if (cfg.model.n_chan_in != 1)
            throw ConfigError("config key 'n_chan_in': megapixel_mnist images have 1 channel, not " +
                              std::to_string(cfg.model.n_chan_in));
        if (cfg.model.n_class != kMegapixelClasses)
            throw ConfigError("config key 'n_class': megapixel_mnist has 10 classes, not " +
                              std::to_string(cfg.model.n_class));
        tasks = tasks_resolve(cfg);
        dir = (fs::path(cfg.data.data_dir) / split).string();
        records = megapixel_mnist_labels_read((fs::path(dir) / "labels.csv").string());
        size_from_meta();
        if (H > 0) grid_check(cfg, H, W, fs::path(cfg.data.data_dir).string());
    }

    // Image size from meta.json so that a wrong N is reported before any image is decoded.
    void size_from_meta() {
        const fs::path path = fs::path(cfg.data.data_dir) / "meta.json";
        std::ifstream in(path);
        if (!in) return;  // get() still checks each decoded image
        try {
            auto meta = nlohmann::json::parse(in);
            H = meta.at("height").get<int64_t>();
            W = meta.at("width").get<int64_t>();
        } catch (const nlohmann::json::exception& e) {
            throw std::runtime_error(path.string() + ": " + e.what());
        }
    }

    int64_t size() const override { return static_cast<int64_t>(records.size()); }

    Example get(int64_t i) override {
        if (i < 0 || i >= size())
            throw std::out_of_range("megapixel_mnist " + split + ": index " + std::to_string(i) + " of " +
                                    std::to_string(size()));
        const MegapixelMnistRecord& rec = records[static_cast<size_t>(i)];
        const std::string path = (fs::path(dir) / rec.file).string();
        torch::Tensor image = image_read(path, 1);  // [1, H, W] uint8
        if (image.size(1) != H || image.size(2) != W) grid_check(cfg, image.size(1), image.size(2), path);
        Example ex;
        ex.name = split + "/" + rec.file;
        ex.source = image_source_make(image, cfg.data);
        for (MnistTask t : tasks) {
            switch (t) {
                case MnistTask::majority: ex.targets.push_back(torch::tensor(rec.majority, torch::kInt64)); break;
                case MnistTask::max: ex.targets.push_back(torch::tensor(rec.max, torch::kInt64)); break;
                case MnistTask::top: ex.targets.push_back(torch::tensor(rec.top, torch::kInt64)); break;
                case MnistTask::multi: {
                    auto multi = torch::zeros({kMegapixelClasses}, torch::kFloat32);  // [10]
                    for (int c = 0; c < kMegapixelClasses; ++c) multi[c] = static_cast<float>(rec.multi[c]);
                    ex.targets.push_back(multi);
                    break;
                }
            }
        }
        return ex;
    }

    Config cfg;
    std::string split, dir;
    std::vector<MnistTask> tasks;
    std::vector<MegapixelMnistRecord> records;
    int64_t H = 0, W = 0;  // from meta.json; 0 = unknown
};

}  // namespace

DatasetPtr megapixel_mnist_dataset_make(const Config& cfg, const std::string& split) {
    return std::make_shared<MegapixelMnistDataset>(cfg, split);
}

}  // namespace ips
