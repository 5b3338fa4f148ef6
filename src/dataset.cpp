#include "ips/dataset.h"

#include <random>

namespace ips {
namespace {

// Per-example generator seeded from (seed, split, index), so any example can be made on its own.
std::mt19937_64 example_rng(int64_t seed, const std::string& split, int64_t i) {
    std::seed_seq seq{static_cast<uint64_t>(seed), static_cast<uint64_t>(split == "train" ? 1 : 2),
                      static_cast<uint64_t>(i)};
    return std::mt19937_64(seq);
}

std::vector<torch::Tensor> targets_random(const Config& cfg, std::mt19937_64& rng) {
    std::vector<torch::Tensor> targets;
    for (const auto& task : cfg.tasks) {
        if (task.act_fn == ActFn::softmax) {
            targets.push_back(torch::tensor(static_cast<int64_t>(rng() % cfg.n_class), torch::kLong));
        } else {
            auto t = torch::zeros({cfg.n_class}, torch::kFloat32);
            for (int c = 0; c < cfg.n_class; ++c) t[c] = static_cast<float>(rng() & 1);
            targets.push_back(t);
        }
    }
    return targets;
}

struct SyntheticDataset : Dataset {
    SyntheticDataset(const Config& c, std::string s) : cfg(c), split(std::move(s)) {
        if (cfg.is_image) {
            img = config_image_size(cfg);
            auto g = grid_shape(img[0], img[1], cfg.patch_size, cfg.patch_stride);
            if (cfg.N > 0 && g[0] * g[1] != cfg.N)
                throw ConfigError("config key 'N': " + std::to_string(cfg.N) +
                                  " patches do not form the square grid of a synthetic image; set "
                                  "'img_size' to an image whose grid has N patches");
        } else if (cfg.N < 1) {
            throw ConfigError("config key 'N': synthetic feature bags need N >= 1");
        }
    }
    int64_t size() const override { return split == "train" ? cfg.n_train : cfg.n_test; }
    Example get(int64_t i) override {
        auto rng = example_rng(cfg.seed, split, i);
        Example ex;
        ex.name = split + "/" + std::to_string(i);
        if (cfg.is_image) {
            auto image = torch::empty({cfg.n_chan_in, img[0], img[1]}, torch::kUInt8);
            auto* p = image.data_ptr<uint8_t>();
            for (int64_t k = 0; k < image.numel(); k += 8) {
                uint64_t r = rng();
                for (int64_t j = 0; j < 8 && k + j < image.numel(); ++j) p[k + j] = static_cast<uint8_t>(r >> (8 * j));
            }
            ex.source = image_grid_source_make(image, cfg.patch_size, cfg.patch_stride,
                                               normalization_from_name(cfg.normalize));
        } else {
            auto bag = torch::empty({cfg.N, cfg.n_chan_in}, torch::kFloat32);
            std::normal_distribution<float> normal;
            auto* p = bag.data_ptr<float>();
            for (int64_t k = 0; k < bag.numel(); ++k) p[k] = normal(rng);
            ex.source = tensor_source_make(bag);
        }
        ex.targets = targets_random(cfg, rng);
        return ex;
    }
    Config cfg;
    std::string split;
    std::array<int64_t, 2> img{0, 0};
};

}  // namespace

DatasetPtr synthetic_dataset_make(const Config& cfg, const std::string& split) {
    return std::make_shared<SyntheticDataset>(cfg, split);
}

const std::vector<DatasetEntry>& dataset_table() {
    static const std::vector<DatasetEntry> table = {
        {"synthetic", "random pixels or features of the configured shapes, random targets (n_train, n_test)",
         synthetic_dataset_make},
    };
    return table;
}

DatasetPtr dataset_open(const Config& cfg, const std::string& split) {
    std::string known;
    for (const auto& entry : dataset_table()) {
        if (cfg.dataset == entry.name) return entry.open(cfg, split);
        known += std::string(known.empty() ? "" : ", ") + entry.name;
    }
    throw ConfigError("config key 'dataset': unknown data set '" + cfg.dataset + "' (known: " + known + ")");
}

std::vector<torch::Tensor> targets_stack(const std::vector<Example>& examples, size_t n_tasks) {
    std::vector<torch::Tensor> out;
    for (size_t t = 0; t < n_tasks; ++t) {
        std::vector<torch::Tensor> col;
        for (const auto& ex : examples) col.push_back(ex.targets.at(t));
        out.push_back(torch::stack(col));
    }
    return out;
}

}  // namespace ips
