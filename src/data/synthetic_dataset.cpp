#include "ips/synthetic_dataset.h"

#include <random>

namespace ips {
namespace {

// Per-example generator seeded from (seed, split, index), so any example can be made on its own.
std::mt19937_64 example_rng(int64_t seed, const std::string& split, int64_t i) {
    std::seed_seq seq{static_cast<uint64_t>(seed), static_cast<uint64_t>(split == "train" ? 1 : 2),
                      static_cast<uint64_t>(i)};
    return std::mt19937_64(seq);
}

struct SyntheticDataset : Dataset {
    SyntheticDataset(const Config& c, std::string s) : cfg(c), split(std::move(s)) {
        if (cfg.model.is_image) {
            img = config_image_size(cfg.data);
            auto g = grid_shape(img[0], img[1], cfg.data.patch_size, cfg.data.patch_stride);
            if (cfg.data.N > 0 && g[0] * g[1] != cfg.data.N)
                throw ConfigError("config key 'N': " + std::to_string(cfg.data.N) +
                                  " patches do not form the square grid of a synthetic image; set "
                                  "'img_size' to an image whose grid has N patches");
        } else if (cfg.data.N < 1) {
            throw ConfigError("config key 'N': synthetic feature bags need N >= 1");
        }
    }
    int64_t size() const override { return split == "train" ? cfg.data.n_train : cfg.data.n_test; }
    Example get(int64_t i) override {
        auto rng = example_rng(cfg.seed, split, i);
        Example ex;
        ex.name = split + "/" + std::to_string(i);
        if (cfg.model.is_image) {
            auto image = torch::empty({cfg.model.n_chan_in, img[0], img[1]}, torch::kUInt8);
            auto* p = image.data_ptr<uint8_t>();
            for (int64_t k = 0; k < image.numel(); k += 8) {
                uint64_t r = rng();
                for (int64_t j = 0; j < 8 && k + j < image.numel(); ++j) p[k + j] = static_cast<uint8_t>(r >> (8 * j));
            }
            ex.source = image_source_make(image, cfg.data);
        } else {
            auto bag = torch::empty({cfg.data.N, cfg.model.n_chan_in}, torch::kFloat32);
            std::normal_distribution<float> normal;
            auto* p = bag.data_ptr<float>();
            for (int64_t k = 0; k < bag.numel(); ++k) p[k] = normal(rng);
            ex.source = tensor_source_make(bag);
        }
        ex.targets = targets_random(cfg.model, rng);
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

}  // namespace ips
