// `dataset: ips_h5`: the reference implementation's single HDF5 file of feature bags, a group per
// slide with `img` and a `label` attribute, written here as the reference writes it.
#include <gtest/gtest.h>

#include "test_support.h"
#include "data/test_data.h"
#include "ips/dataset.h"
#include "ips/feature_bag.h"
#include "ips/ips_h5_dataset.h"

using namespace ips;
using test::error_of;
using test::TempDir;

namespace {

Config bag_config(const TempDir& dir) { return test::bag_dataset_config("ips_h5", dir.path, 5, "tumor"); }

}  // namespace

TEST(IpsH5Dataset, GroupsAreExamplesInNameOrder) {
    TempDir dir;
    const std::string file = dir / "train.h5";
    torch::manual_seed(0);
    const std::vector<torch::Tensor> imgs = {torch::randn({7, 5}), torch::randn({3, 5}).to(torch::kHalf),
                                             torch::randn({12, 5})};
    const std::vector<std::string> names = {"tumor_001", "normal_001", "tumor_002"};
    const std::vector<int64_t> labels = {1, 0, 1};
    for (size_t i = 0; i < 3; ++i) feature_bag_group_write(file, names[i], imgs[i], labels[i]);

    const Config cfg = bag_config(dir);
    auto ds = dataset_open(cfg, "train");
    ASSERT_EQ(ds->size(), 3);
    const size_t order[] = {1, 0, 2};  // groups in name order, as h5py lists them
    for (int64_t i = 0; i < 3; ++i) {
        const size_t k = order[i];
        const Example ex = ds->get(i);
        EXPECT_EQ(ex.name, file + "#" + names[k]);
        ASSERT_EQ(ex.source->size(), imgs[k].size(0));
        EXPECT_TRUE(torch::equal(ex.source->read_range(0, ex.source->size()), imgs[k].to(torch::kFloat32)));
        ASSERT_EQ(ex.targets.size(), 1u);
        EXPECT_EQ(ex.targets[0].scalar_type(), torch::kLong);
        EXPECT_EQ(ex.targets[0].item<int64_t>(), labels[k]);
    }
    // Every task gets the slide's label, as the kind of task takes it.
    Config two = cfg;
    two.model.n_class = 1;
    two.model.tasks = {Task{0, "tumor", ActFn::sigmoid, Metric::auc}, Task{1, "again", ActFn::sigmoid, Metric::auc}};
    const Example ex = ips_h5_dataset_make(two, "train")->get(1);  // tumor_001
    ASSERT_EQ(ex.targets.size(), 2u);
    EXPECT_TRUE(torch::equal(ex.targets[0], torch::tensor({1.f})));
    EXPECT_TRUE(torch::equal(ex.targets[1], torch::tensor({1.f})));
}

TEST(IpsH5Dataset, SplitFilesFollowTheKeys) {
    TempDir dir;
    feature_bag_group_write(dir / "camelyon_test.h5", "test_001", torch::ones({2, 5}), 0);
    Config cfg = bag_config(dir);
    cfg.data.test_fname = "camelyon_test.h5";
    auto ds = ips_h5_dataset_make(cfg, "test");
    EXPECT_EQ(ds->size(), 1);
    EXPECT_EQ(ds->get(0).targets[0].item<int64_t>(), 0);
    // No train.h5 in the folder: the key that names it is reported.
    const std::string e = error_of([&] { ips_h5_dataset_make(cfg, "train"); });
    EXPECT_NE(e.find("config key 'train_fname'"), std::string::npos) << e;
    EXPECT_NE(e.find("train.h5"), std::string::npos) << e;
}

TEST(IpsH5Dataset, WrongConfigsAndFilesAreNamed) {
    TempDir dir;
    feature_bag_group_write(dir / "train.h5", "s", torch::ones({2, 5}), 1);
    Config cfg = bag_config(dir);
    cfg.model.is_image = true;
    std::string e = error_of([&] { ips_h5_dataset_make(cfg, "train"); });
    EXPECT_NE(e.find("config key 'is_image'"), std::string::npos) << e;
    EXPECT_THROW(ips_h5_dataset_make(cfg, "train"), ConfigError);

    // A per-slide bag (datasets at the root, no groups) is not the reference layout.
    FeatureBag bag;
    bag.features = torch::ones({3, 5});
    bag.coords = torch::zeros({3, 2}, torch::kLong);
    bag.patch_size = 256;
    feature_bag_write(dir / "test.h5", bag);
    cfg = bag_config(dir);
    e = error_of([&] { ips_h5_dataset_make(cfg, "test"); });
    EXPECT_NE(e.find("test.h5"), std::string::npos) << e;
    EXPECT_NE(e.find("no groups"), std::string::npos) << e;

    // A label the task cannot take is named with the group.
    feature_bag_group_write(dir / "three.h5", "slide_x", torch::ones({2, 5}), 3);
    cfg.data.train_fname = "three.h5";
    auto ds = ips_h5_dataset_make(cfg, "train");
    e = error_of([&] { ds->get(0); });
    EXPECT_NE(e.find("three.h5#slide_x"), std::string::npos) << e;
    EXPECT_NE(e.find("not a class in [0, 2)"), std::string::npos) << e;
}
