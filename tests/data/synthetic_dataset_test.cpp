// `dataset: synthetic`: random images or feature bags of the configured shapes, each example a
// function of (seed, split, index) alone.
#include <gtest/gtest.h>

#include "test_support.h"
#include "ips/dataset.h"
#include "ips/synthetic_dataset.h"

using namespace ips;
using test::error_of;

namespace {

Config image_config() {
    Config c;
    c.data.dataset = "synthetic";
    c.model.is_image = true;
    c.model.n_chan_in = 3;
    c.model.n_class = 4;
    c.model.tasks = {Task{0, "kind", ActFn::softmax, Metric::accuracy},
                     Task{0, "tags", ActFn::sigmoid, Metric::multilabel_accuracy}};
    c.data.N = 16;
    c.data.patch_size = c.data.patch_stride = {8, 8};  // a 32 x 32 image
    c.data.n_train = 5;
    c.data.n_test = 2;
    c.seed = 11;
    return c;
}

Config bag_config() {
    Config c = image_config();
    c.model.is_image = false;
    c.model.n_chan_in = 6;
    c.data.N = 40;
    return c;
}

torch::Tensor all_patches(const Example& ex) { return ex.source->read_range(0, ex.source->size()); }

}  // namespace

TEST(SyntheticDataset, ImagesOfTheConfiguredGrid) {
    const Config cfg = image_config();
    auto train = synthetic_dataset_make(cfg, "train");
    auto test = synthetic_dataset_make(cfg, "test");
    EXPECT_EQ(train->size(), 5);
    EXPECT_EQ(test->size(), 2);
    const Example ex = train->get(3);
    EXPECT_EQ(ex.name, "train/3");
    EXPECT_EQ(ex.source->size(), 16);
    EXPECT_EQ(ex.source->grid_cols(), 4);
    EXPECT_EQ(ex.source->patch_shape(), (std::vector<int64_t>{3, 8, 8}));
    EXPECT_EQ(ex.source->patch_origin(5), (std::array<int64_t, 2>{8, 8}));
    const auto px = all_patches(ex);  // [16, 3, 8, 8] in [0, 1], multiples of 1/255
    EXPECT_GE(px.min().item<float>(), 0.0f);
    EXPECT_LE(px.max().item<float>(), 1.0f);
    EXPECT_TRUE(torch::allclose(px * 255, (px * 255).round(), 0, 1e-4));
    EXPECT_NEAR(px.mean().item<double>(), 0.5, 0.05);  // uniform bytes
    // Targets: one per task, of the task's kind.
    ASSERT_EQ(ex.targets.size(), 2u);
    EXPECT_EQ(ex.targets[0].scalar_type(), torch::kLong);
    EXPECT_EQ(ex.targets[0].dim(), 0);
    EXPECT_EQ(ex.targets[1].sizes(), (std::vector<int64_t>{4}));
    // img_size overrides the square grid: 24 x 40 gives 3 x 5 patches.
    Config wide = cfg;
    wide.data.img_size = {24, 40};
    wide.data.N = 15;
    EXPECT_EQ(synthetic_dataset_make(wide, "train")->get(0).source->size(), 15);
}

TEST(SyntheticDataset, FeatureBagsAreStandardNormal) {
    const Config cfg = bag_config();
    auto ds = dataset_open(cfg, "train");  // through the table
    std::vector<torch::Tensor> rows;
    for (int64_t i = 0; i < ds->size(); ++i) {
        const Example ex = ds->get(i);
        EXPECT_EQ(ex.source->size(), 40);
        EXPECT_EQ(ex.source->patch_shape(), (std::vector<int64_t>{6}));
        rows.push_back(all_patches(ex));
    }
    const auto all = torch::cat(rows);  // 1200 values
    EXPECT_EQ(all.scalar_type(), torch::kFloat32);
    EXPECT_NEAR(all.mean().item<double>(), 0.0, 0.1);
    EXPECT_NEAR(all.std().item<double>(), 1.0, 0.1);
}

TEST(SyntheticDataset, EachExampleIsAFunctionOfSeedSplitAndIndex) {
    for (const Config& cfg : {image_config(), bag_config()}) {
        SCOPED_TRACE(cfg.model.is_image ? "images" : "bags");
        auto a = synthetic_dataset_make(cfg, "train");
        auto b = synthetic_dataset_make(cfg, "train");
        const Example late = b->get(4);  // asked for first, out of order
        for (int64_t i = 0; i < 5; ++i) {
            const Example x = a->get(i), y = b->get(i);
            EXPECT_TRUE(torch::equal(all_patches(x), all_patches(y))) << i;
            EXPECT_TRUE(torch::equal(x.targets[0], y.targets[0])) << i;
            EXPECT_TRUE(torch::equal(x.targets[1], y.targets[1])) << i;
        }
        EXPECT_TRUE(torch::equal(all_patches(late), all_patches(a->get(4))));
        EXPECT_FALSE(torch::equal(all_patches(a->get(0)), all_patches(a->get(1))));
        // The split and the seed are part of it.
        EXPECT_FALSE(torch::equal(all_patches(a->get(0)), all_patches(synthetic_dataset_make(cfg, "test")->get(0))));
        Config other = cfg;
        other.seed = 12;
        EXPECT_FALSE(torch::equal(all_patches(a->get(0)), all_patches(synthetic_dataset_make(other, "train")->get(0))));
    }
}

TEST(SyntheticDataset, ShapesThatCannotBeMadeNameN) {
    Config cfg = image_config();
    cfg.data.img_size = {32, 32};
    cfg.data.N = 15;  // the 32 x 32 image holds 16
    std::string e = error_of([&] { synthetic_dataset_make(cfg, "train"); });
    EXPECT_NE(e.find("config key 'N'"), std::string::npos) << e;
    EXPECT_THROW(synthetic_dataset_make(cfg, "train"), ConfigError);
    Config bags = bag_config();
    bags.data.N = 0;
    e = error_of([&] { synthetic_dataset_make(bags, "train"); });
    EXPECT_NE(e.find("config key 'N'"), std::string::npos) << e;
    EXPECT_NE(e.find("N >= 1"), std::string::npos) << e;
}
