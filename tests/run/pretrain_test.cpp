// Encoder pre-training on a tiny Megapixel MNIST generated from real (Fashion-)MNIST digits: a
// few steps write a trunk in torchvision's layout that trunk_load_torchvision accepts; configs it
// cannot pre-train are named by key.
#include <gtest/gtest.h>

#include <cstdlib>
#include <functional>
#include <map>
#include <filesystem>
#include <set>

#include "test_support.h"
#include "ips/megapixel_mnist.h"
#include "ips/model.h"
#include "ips/pretrain.h"
#include "ips/torch_file.h"
#include "ips/torchvision.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::TempDir;

namespace {

// A 128 x 128 Megapixel MNIST of 4 + 2 images from the first Fashion-MNIST test digits.
void generate(const fs::path& out) {
    const DigitSet all = mnist_digits_load(test::fashion_mnist_dir(), "test");
    const DigitSet train{all.images.slice(0, 0, 600), all.labels.slice(0, 0, 600)};
    const DigitSet test{all.images.slice(0, 600, 1200), all.labels.slice(0, 600, 1200)};
    MegapixelMnistOptions opt;
    opt.out = out.string();
    opt.width = opt.height = 128;
    opt.n_train = 4;
    opt.n_test = 2;
    opt.n_noise = 3;
    opt.seed = 1;
    megapixel_mnist_generate(opt, train, test, "idx");
}

Config pretrain_config(const fs::path& data) {
    Config c;
    c.data.dataset = "megapixel_mnist";
    c.data.data_dir = data.string();
    c.data.patch_size = c.data.patch_stride = {32, 32};
    c.model.is_image = true;
    c.model.n_chan_in = 1;
    c.model.enc_type = EncoderType::resnet18;
    c.model.n_res_blocks = 2;
    c.model.encoder_width = 8;
    c.seed = 3;
    return c;
}

PretrainOptions few_steps() {
    PretrainOptions o;
    o.steps = 3;
    o.batch = 8;
    o.progress = false;
    return o;
}

}  // namespace

TEST(Pretrain, WritesATorchvisionTrunkThatLoads) {
    TempDir dir("ips_pretrain_unit");
    generate(dir.path / "data");
    const Config cfg = pretrain_config(dir.path / "data");
    const std::string out = dir / "weights/encoder.pth";  // the folder is made
    const PretrainResult r = encoder_pretrain_megapixel_mnist(cfg, few_steps(), out);
    EXPECT_EQ(r.steps, 3);
    EXPECT_GE(r.test_accuracy, 0.0);
    EXPECT_LE(r.test_accuracy, 1.0);
    EXPECT_GT(r.seconds, 0.0);
    ASSERT_TRUE(fs::exists(out));

    // torchvision names only: conv1, bn1, layer1, layer2; no classifier, no numbered keys.
    const NamedTensors file = torch_file_read(out);
    std::set<std::string> roots;
    for (const auto& [key, t] : file) roots.insert(key.substr(0, key.find('.')));
    EXPECT_EQ(roots, (std::set<std::string>{"conv1", "bn1", "layer1", "layer2"}));
    EXPECT_EQ(file.front().first, "conv1.weight");
    EXPECT_EQ(file.front().second.sizes(), (std::vector<int64_t>{8, 1, 7, 7}));

    // It loads into the trunk the config describes, and it was trained: not the initial weights.
    int64_t dim = 0;
    torch::manual_seed(uint64_t(cfg.seed));
    auto initial = resnet_trunk_make(EncoderType::resnet18, 1, 2, &dim, 8);
    auto trunk = resnet_trunk_make(EncoderType::resnet18, 1, 2, &dim, 8);
    trunk_load_torchvision(trunk, out, 2);
    const NamedTensors loaded = state_dict_of(*trunk), start = state_dict_of(*initial);
    std::map<std::string, torch::Tensor> by_name(file.begin(), file.end());
    ASSERT_EQ(loaded.size(), file.size());
    for (const auto& [key, t] : loaded) {
        const std::string tv = key.substr(0, 2) == "0." ? "conv1" + key.substr(1)
                               : key.substr(0, 2) == "1." ? "bn1" + key.substr(1)
                               : key.substr(0, 2) == "4." ? "layer1" + key.substr(1)
                                                          : "layer2" + key.substr(1);
        ASSERT_TRUE(by_name.count(tv)) << tv;
        EXPECT_TRUE(torch::equal(t, by_name.at(tv))) << key;
    }
    EXPECT_FALSE(torch::equal(loaded[0].second, start[0].second));  // conv1 moved
    // The encoder_weights key reads the same file into a model's trunk.
    auto rgb = resnet_trunk_make(EncoderType::resnet18, 3, 2, &dim, 8);
    const std::string e = error_of([&] { trunk_load_torchvision(rgb, out, 2); });
    EXPECT_NE(e.find("conv1.weight"), std::string::npos) << e;
}

TEST(Pretrain, ConfigsItCannotPretrainAreNamed) {
    TempDir dir("ips_pretrain_unit_bad");
    const Config good = pretrain_config(dir.path / "data");  // never read: the checks come first
    struct Case {
        std::function<void(Config&)> spoil;
        std::string key;
    };
    const std::vector<Case> cases = {
        {[](Config& c) { c.data.dataset = "synthetic"; }, "config key 'dataset'"},
        {[](Config& c) { c.model.n_chan_in = 3; }, "config key 'n_chan_in'"},
        {[](Config& c) { c.model.is_image = false; }, "config key 'is_image'"},
    };
    for (const auto& c : cases) {
        Config cfg = good;
        c.spoil(cfg);
        const std::string e = error_of([&] { encoder_pretrain_megapixel_mnist(cfg, few_steps(), dir / "w.pth"); });
        EXPECT_NE(e.find(c.key), std::string::npos) << e;
        EXPECT_THROW(encoder_pretrain_megapixel_mnist(cfg, few_steps(), dir / "w.pth"), ConfigError);
    }
    // A megapixel_mnist config whose folder holds no data set: the labels file is named.
    const std::string e = error_of([&] { encoder_pretrain_megapixel_mnist(good, few_steps(), dir / "w.pth"); });
    EXPECT_NE(e.find("labels.csv"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(dir / "w.pth"));
}
