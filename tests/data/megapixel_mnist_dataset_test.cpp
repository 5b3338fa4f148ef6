// `dataset: megapixel_mnist`: the data set over a folder the generator wrote from real
// (Fashion-)MNIST digits: one PNG decoded per get(), targets by task name, config mismatches
// named by their key.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "test_support.h"
#include "data/test_data.h"
#include "ips/dataset.h"
#include "ips/image_io.h"
#include "ips/megapixel_mnist.h"
#include "ips/megapixel_mnist_dataset.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::mnist_small_generate;
using test::mnist_small_options;
using test::TempDir;

namespace {

Config dataset_config(const fs::path& dir) {
    Config cfg;
    cfg.data.dataset = "megapixel_mnist";
    cfg.data.data_dir = dir.string();
    cfg.data.patch_size = {40, 40};
    cfg.data.patch_stride = {40, 40};
    cfg.data.N = 20;  // 160x200 canvas: 4 x 5 patches
    const char* names[] = {"majority", "max", "top", "multi"};
    for (int t = 0; t < 4; ++t)
        cfg.model.tasks.push_back({t, names[t], t == 3 ? ActFn::sigmoid : ActFn::softmax,
                             t == 3 ? Metric::multilabel_accuracy : Metric::accuracy});
    return cfg;
}

}  // namespace

// Moved from megapixel_mnist_test.cpp.
TEST(MegapixelMnistDataset, GetDecodesOneImageWithTargetsInTaskOrder) {
    TempDir dir;
    mnist_small_generate(mnist_small_options(dir.path));
    Config cfg = dataset_config(dir.path);
    std::swap(cfg.model.tasks[0], cfg.model.tasks[2]);  // order follows cfg.model.tasks, matched by name
    DatasetPtr ds = megapixel_mnist_dataset_make(cfg, "test");
    ASSERT_EQ(ds->size(), 3);
    auto records = megapixel_mnist_labels_read((dir.path / "test/labels.csv").string());
    for (int64_t i = 0; i < ds->size(); ++i) {
        Example ex = ds->get(i);
        const auto& r = records[i];
        ASSERT_EQ(ex.source->size(), 20);
        EXPECT_EQ(ex.source->grid_cols(), 5);
        ASSERT_EQ(ex.targets.size(), 4u);
        EXPECT_EQ(ex.targets[0].item<int64_t>(), r.top);
        EXPECT_EQ(ex.targets[1].item<int64_t>(), r.max);
        EXPECT_EQ(ex.targets[2].item<int64_t>(), r.majority);
        EXPECT_EQ(ex.targets[0].dim(), 0);
        EXPECT_EQ(ex.targets[0].scalar_type(), torch::kInt64);
        ASSERT_EQ(ex.targets[3].sizes(), (std::vector<int64_t>{10}));
        EXPECT_EQ(ex.targets[3].scalar_type(), torch::kFloat32);
        for (int c = 0; c < 10; ++c) EXPECT_EQ(ex.targets[3][c].item<float>(), r.multi[c]);
        // Patch 6 (row 1, col 1) is the image's [40:80, 40:80] scaled to [0, 1].
        auto image = image_read((dir.path / "test" / r.file).string(), 1);  // [1, H, W]
        auto patch = ex.source->read(torch::tensor({6}, torch::kInt64));    // [1, 1, 40, 40]
        auto expect = image.slice(1, 40, 80).slice(2, 40, 80).to(torch::kFloat32) / 255.0;
        EXPECT_TRUE(torch::allclose(patch[0], expect));
        EXPECT_EQ(ex.name, "test/" + r.file);
    }
}

// Moved from megapixel_mnist_test.cpp.
TEST(MegapixelMnistDataset, ConfigMismatchesNameTheKey) {
    TempDir dir;
    mnist_small_generate(mnist_small_options(dir.path));
    Config cfg = dataset_config(dir.path);
    cfg.data.N = 16;
    try {
        megapixel_mnist_dataset_make(cfg, "train");
        FAIL() << "no error for a wrong N";
    } catch (const ConfigError& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("'N'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("N = 20"), std::string::npos) << msg;
    }
    // Without meta.json the first get() still catches it.
    fs::remove(dir.path / "meta.json");
    auto ds = megapixel_mnist_dataset_make(cfg, "train");
    EXPECT_THROW(ds->get(0), ConfigError);

    cfg = dataset_config(dir.path);
    cfg.model.tasks[1].name = "min";
    try {
        megapixel_mnist_dataset_make(cfg, "train");
        FAIL() << "no error for an unknown task";
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("'tasks'"), std::string::npos) << e.what();
    }
    cfg = dataset_config(dir.path);
    cfg.model.n_chan_in = 3;
    EXPECT_THROW(megapixel_mnist_dataset_make(cfg, "train"), ConfigError);
    cfg = dataset_config(dir.path / "nowhere");
    EXPECT_THROW(megapixel_mnist_dataset_make(cfg, "train"), std::runtime_error);
}

TEST(MegapixelMnistDataset, SplitsSizesAndIndicesThroughTheTable) {
    TempDir dir;
    mnist_small_generate(mnist_small_options(dir.path));
    const Config cfg = dataset_config(dir.path);
    auto train = dataset_open(cfg, "train");
    auto test = dataset_open(cfg, "test");
    EXPECT_EQ(train->size(), 6);
    EXPECT_EQ(test->size(), 3);
    // Each get decodes its own PNG: the patches are that file's pixels.
    const auto records = megapixel_mnist_labels_read((dir.path / "train/labels.csv").string());
    const Example ex = train->get(5);
    EXPECT_EQ(ex.name, "train/" + records[5].file);
    const auto image = image_read((dir.path / "train" / records[5].file).string(), 1).to(torch::kFloat32) / 255.0;
    const auto patches = ex.source->read_range(0, 20);  // [20, 1, 40, 40]
    EXPECT_TRUE(torch::allclose(patches[19][0], image[0].slice(0, 120, 160).slice(1, 160, 200)));
    EXPECT_FALSE(torch::equal(patches, train->get(4).source->read_range(0, 20)));
    for (int64_t bad : {int64_t(-1), int64_t(6)}) {
        const std::string e = error_of([&] { train->get(bad); });
        EXPECT_NE(e.find("index " + std::to_string(bad) + " of 6"), std::string::npos) << e;
    }
    EXPECT_THROW(train->get(6), std::out_of_range);
    EXPECT_THROW(megapixel_mnist_dataset_make(cfg, "val"), std::invalid_argument);
}

TEST(MegapixelMnistDataset, EachConfigMismatchNamesItsKey) {
    TempDir dir;
    mnist_small_generate(mnist_small_options(dir.path));
    auto key_of = [&](const Config& cfg) {
        try {
            megapixel_mnist_dataset_make(cfg, "train");
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("(no ConfigError)");
    };
    Config cfg = dataset_config(dir.path);
    cfg.data.data_dir.clear();
    EXPECT_NE(key_of(cfg).find("config key 'data_dir'"), std::string::npos) << key_of(cfg);
    cfg = dataset_config(dir.path);
    cfg.model.is_image = false;
    EXPECT_NE(key_of(cfg).find("config key 'is_image'"), std::string::npos) << key_of(cfg);
    cfg = dataset_config(dir.path);
    cfg.model.n_class = 11;
    EXPECT_NE(key_of(cfg).find("config key 'n_class': megapixel_mnist has 10 classes, not 11"), std::string::npos)
        << key_of(cfg);
    cfg = dataset_config(dir.path);
    cfg.model.tasks[3].act_fn = ActFn::softmax;  // multi is multi-label
    EXPECT_NE(key_of(cfg).find("(task 3 'multi'): act_fn must be sigmoid"), std::string::npos) << key_of(cfg);
    cfg = dataset_config(dir.path);
    cfg.model.tasks[0].act_fn = ActFn::sigmoid;
    EXPECT_NE(key_of(cfg).find("(task 0 'majority'): act_fn must be softmax"), std::string::npos) << key_of(cfg);
    cfg = dataset_config(dir.path);
    cfg.data.patch_size = {300, 300};  // larger than the image
    EXPECT_NE(key_of(cfg).find("config key 'patch_size'"), std::string::npos) << key_of(cfg);
    // Only the tasks asked for, in their order.
    cfg = dataset_config(dir.path);
    cfg.model.tasks = {cfg.model.tasks[3]};
    const Example ex = megapixel_mnist_dataset_make(cfg, "train")->get(0);
    ASSERT_EQ(ex.targets.size(), 1u);
    EXPECT_EQ(ex.targets[0].sizes(), (std::vector<int64_t>{10}));
}
