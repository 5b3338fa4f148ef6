#include "ips/pretrain.h"

#include <chrono>
#include <filesystem>
#include <random>

#include "ips/image_io.h"
#include "ips/megapixel_mnist.h"
#include "ips/model.h"
#include "ips/precision.h"
#include "ips/progress.h"
#include "ips/step.h"
#include "ips/torchvision.h"

namespace ips {
namespace {

constexpr int64_t kBackground = 10;

struct CropSampler {
    std::string dir;
    std::vector<MegapixelMnistRecord> records;
    std::array<int64_t, 2> patch;
    std::mt19937_64 rng;

    CropSampler(const std::string& data_dir, const std::string& split, std::array<int64_t, 2> p, uint64_t seed)
        : dir(data_dir + "/" + split), records(megapixel_mnist_labels_read(dir + "/labels.csv")), patch(p), rng(seed) {
        if (records.empty()) throw std::runtime_error(dir + "/labels.csv: no images to pre-train on");
    }

    int64_t uniform(int64_t lo, int64_t hi) {  // inclusive
        return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
    }

    // Half the crops hold a digit centre (label = its class), half hold none (background).
    // Several crops come from each decoded image: decoding dominates otherwise.
    void sample(int64_t n, std::vector<torch::Tensor>& crops, std::vector<int64_t>& labels) {
        const int64_t Ph = patch[0], Pw = patch[1];
        while (static_cast<int64_t>(crops.size()) < n) {
            const auto& rec = records[rng() % records.size()];
            auto img = image_read(dir + "/" + rec.file, 1);  // [1, H, W]
            const int64_t H = img.size(1), W = img.size(2);
            for (int k = 0; k < 16 && static_cast<int64_t>(crops.size()) < n; ++k) {
                int64_t x, y, label = kBackground;
                if (k % 2 == 0) {
                    const auto& d = rec.digits[rng() % rec.digits.size()];
                    const int64_t cx = d.x + 14, cy = d.y + 14;  // digit centre
                    x = std::clamp<int64_t>(cx - uniform(0, Pw - 1), 0, W - Pw);
                    y = std::clamp<int64_t>(cy - uniform(0, Ph - 1), 0, H - Ph);
                    label = d.label;
                } else {
                    x = uniform(0, W - Pw), y = uniform(0, H - Ph);
                    for (const auto& d : rec.digits) {
                        const int64_t cx = d.x + 14, cy = d.y + 14;
                        if (cx >= x && cx < x + Pw && cy >= y && cy < y + Ph) label = d.label;
                    }
                }
                crops.push_back(img.index({torch::indexing::Slice(), torch::indexing::Slice(y, y + Ph),
                                           torch::indexing::Slice(x, x + Pw)}).clone());
                labels.push_back(label);
            }
        }
    }

    std::pair<torch::Tensor, torch::Tensor> batch(int64_t n) {
        std::vector<torch::Tensor> crops;
        std::vector<int64_t> labels;
        sample(n, crops, labels);
        return {torch::stack(crops).to(torch::kFloat32).div_(255.0), torch::tensor(labels, torch::kLong)};
    }
};

}  // namespace

PretrainResult encoder_pretrain_megapixel_mnist(const Config& cfg, const PretrainOptions& opt, const std::string& out) {
    if (!cfg.model.is_image) throw ConfigError("config key 'is_image': pre-training needs an image encoder");
    if (cfg.model.enc_type == EncoderType::vit)
        throw ConfigError("config key 'enc_type': pre-training trains ResNet trunks; a ViT starts from its own weight file");
    if (cfg.model.n_chan_in != 1) throw ConfigError("config key 'n_chan_in': Megapixel MNIST is grey (1 channel)");
    if (cfg.data.dataset != "megapixel_mnist")
        throw ConfigError("config key 'dataset': pre-training reads digit positions of megapixel_mnist data");
    auto start = std::chrono::steady_clock::now();
    torch::manual_seed(static_cast<uint64_t>(cfg.seed));
    int64_t dim = 0;
    cpu_kernels_check();
    auto trunk = resnet_trunk_make(cfg.model.enc_type, 1, cfg.model.n_res_blocks, &dim, cfg.model.encoder_width);
    torch::nn::Linear classifier(dim, kBackground + 1);
    trunk->to(opt.device);
    classifier->to(opt.device);
    std::vector<torch::Tensor> params = trunk->parameters();
    for (auto& p : classifier->parameters()) params.push_back(p);
    torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(opt.lr).weight_decay(1e-4));
    CropSampler train(cfg.data.data_dir, "train", cfg.data.patch_size, static_cast<uint64_t>(cfg.seed) + 11);

    Progress bar("pre-train encoder", opt.steps, "step");
    trunk->train();
    for (int step = 0; step < opt.steps; ++step) {
        // Cosine decay to zero: short runs settle instead of ending on a large step.
        const double lr = 0.5 * opt.lr * (1 + std::cos(M_PI * step / opt.steps));
        optimizer_lr_set(optimizer, lr);
        auto [x, y] = train.batch(opt.batch);
        auto loss = torch::cross_entropy_loss(classifier(trunk->forward(x.to(opt.device))), y.to(opt.device));
        optimizer.zero_grad();
        loss.backward();
        optimizer.step();
        if (opt.progress) bar.update(1, "loss " + std::to_string(loss.item<double>()).substr(0, 6));
    }
    if (opt.progress) bar.finish();

    trunk->eval();
    torch::NoGradGuard no_grad;
    CropSampler test(cfg.data.data_dir, "test", cfg.data.patch_size, static_cast<uint64_t>(cfg.seed) + 13);
    auto [x, y] = test.batch(1024);
    auto pred = classifier(trunk->forward(x.to(opt.device))).argmax(-1).to(torch::kCPU);
    PretrainResult r;
    r.test_accuracy = pred.eq(y).to(torch::kFloat64).mean().item<double>();
    r.steps = opt.steps;
    std::filesystem::path out_path(out);
    if (out_path.has_parent_path()) std::filesystem::create_directories(out_path.parent_path());
    trunk->to(torch::kCPU);
    trunk_save_torchvision(trunk, out);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
}

}  // namespace ips
