// The table of data set kinds and the helpers they share: opening by the `dataset` key, the split
// file a kind reads, and label cells parsed for each kind of task.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "ips/dataset.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::TempDir;

namespace {

Task softmax_task() { return Task{0, "kind", ActFn::softmax, Metric::accuracy}; }
Task sigmoid_task() { return Task{0, "tags", ActFn::sigmoid, Metric::multilabel_accuracy}; }

}  // namespace

TEST(Dataset, TableListsEveryKindWithADescription) {
    std::vector<std::string> names;
    for (const auto& e : dataset_table()) {
        names.push_back(e.name);
        EXPECT_GT(std::string(e.description).size(), 10u) << e.name;
        EXPECT_TRUE(bool(e.open)) << e.name;
    }
    EXPECT_EQ(names, (std::vector<std::string>{"synthetic", "megapixel_mnist", "traffic_signs", "csv", "ips_h5"}));
}

TEST(Dataset, OpenFindsTheKindByTheDatasetKey) {
    Config cfg;
    cfg.model.is_image = false;
    cfg.model.n_chan_in = 4;
    cfg.model.n_class = 2;
    cfg.model.tasks = {softmax_task()};
    cfg.data.dataset = "synthetic";
    cfg.data.N = 10;
    cfg.data.n_train = 7;
    cfg.data.n_test = 3;
    EXPECT_EQ(dataset_open(cfg, "train")->size(), 7);
    EXPECT_EQ(dataset_open(cfg, "test")->size(), 3);
    EXPECT_EQ(dataset_open(cfg, "train")->get(2).source->size(), 10);

    cfg.data.dataset = "imagenet";
    try {
        dataset_open(cfg, "train");
        FAIL() << "no error for an unknown data set";
    } catch (const ConfigError& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find("config key 'dataset'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("'imagenet'"), std::string::npos) << msg;
        EXPECT_NE(msg.find("known: synthetic, megapixel_mnist, traffic_signs, csv, ips_h5"), std::string::npos) << msg;
    }
    // A known kind whose files are missing says which key to fix.
    cfg.data.dataset = "csv";
    cfg.data.data_dir = "/nonexistent_ips_dir";
    const std::string e = error_of([&] { dataset_open(cfg, "test"); });
    EXPECT_NE(e.find("'test_fname'"), std::string::npos) << e;
}

TEST(Dataset, SplitFileNamesAndDefaults) {
    TempDir dir;
    std::ofstream(dir / "train.csv") << "x\n";
    std::ofstream(dir / "test.h5") << "x";
    std::ofstream(dir / "mine.txt") << "x";
    fs::create_directories(dir.path / "sub");
    std::ofstream(dir / "sub/held_out.csv") << "x";
    DataOptions d;
    d.data_dir = dir.path.string();
    EXPECT_EQ(fs::path(split_file(d, "train", ".csv")), dir.path / "train.csv");
    EXPECT_EQ(fs::path(split_file(d, "test", ".h5")), dir.path / "test.h5");
    d.train_fname = "mine.txt";
    d.test_fname = "sub/held_out.csv";  // relative to data_dir
    EXPECT_EQ(fs::path(split_file(d, "train", ".csv")), dir.path / "mine.txt");
    EXPECT_EQ(fs::path(split_file(d, "test", ".csv")), dir.path / "sub/held_out.csv");

    d.train_fname = "absent.csv";
    try {
        split_file(d, "train", ".csv");
        FAIL() << "no error for a missing split file";
    } catch (const FileNotFound& e) {  // the key is named too
        const std::string msg = e.what();
        EXPECT_NE(msg.find("config key 'train_fname'"), std::string::npos) << msg;
        EXPECT_NE(msg.find((dir.path / "absent.csv").string()), std::string::npos) << msg;
    }
    d.test_fname.clear();
    const std::string e = error_of([&] { split_file(d, "test", ".csv"); });
    EXPECT_NE(e.find("'test_fname'"), std::string::npos) << e;
    EXPECT_NE(e.find("test.csv"), std::string::npos) << e;
}

TEST(Dataset, TargetParseSoftmaxCells) {
    const Task t = softmax_task();
    const auto two = target_parse("2", t, 3, "f.csv:4");
    EXPECT_EQ(two.dim(), 0);
    EXPECT_EQ(two.scalar_type(), torch::kLong);
    EXPECT_EQ(two.item<int64_t>(), 2);
    EXPECT_EQ(target_parse("0", t, 3, "w").item<int64_t>(), 0);
    EXPECT_EQ(target_parse("1.0", t, 3, "w").item<int64_t>(), 1);  // a whole number written as a float
    for (const std::string bad : {"3", "-1", "1.5"}) {
        const std::string e = error_of([&] { target_parse(bad, t, 3, "f.csv:4"); });
        EXPECT_NE(e.find("f.csv:4: label " + bad + " of task 'kind' is not a class in [0, 3)"), std::string::npos) << e;
    }
    for (const std::string bad : {"abc", "2x", ""}) {
        const std::string e = error_of([&] { target_parse(bad, t, 3, "f.csv:4"); });
        EXPECT_NE(e.find("f.csv:4: label '" + bad + "' of task 'kind' is not a number"), std::string::npos) << e;
    }
}

TEST(Dataset, TargetParseSigmoidCells) {
    const Task t = sigmoid_task();
    // One class: a probability.
    const auto p = target_parse("0.25", t, 1, "w");
    EXPECT_EQ(p.sizes(), (std::vector<int64_t>{1}));
    EXPECT_EQ(p.scalar_type(), torch::kFloat32);
    EXPECT_FLOAT_EQ(p[0].item<float>(), 0.25f);
    EXPECT_FLOAT_EQ(target_parse("1", t, 1, "w")[0].item<float>(), 1.0f);
    std::string e = error_of([&] { target_parse("1.5", t, 1, "g.csv:2"); });
    EXPECT_NE(e.find("g.csv:2: label 1.5 of task 'tags' is not in [0, 1]"), std::string::npos) << e;
    // Several classes: the present ones, split by ';' or spaces; none present is all zeros.
    EXPECT_TRUE(torch::equal(target_parse("0;2", t, 4, "w"), torch::tensor({1.f, 0.f, 1.f, 0.f})));
    EXPECT_TRUE(torch::equal(target_parse("3 1", t, 4, "w"), torch::tensor({0.f, 1.f, 0.f, 1.f})));
    EXPECT_TRUE(torch::equal(target_parse("1;1", t, 4, "w"), torch::tensor({0.f, 1.f, 0.f, 0.f})));
    EXPECT_TRUE(torch::equal(target_parse("", t, 4, "w"), torch::zeros({4})));
    e = error_of([&] { target_parse("0;4", t, 4, "g.csv:3"); });
    EXPECT_NE(e.find("g.csv:3: class 4 of task 'tags' is not a class in [0, 4)"), std::string::npos) << e;
    e = error_of([&] { target_parse("0;x", t, 4, "g.csv:3"); });
    EXPECT_NE(e.find("label 'x' of task 'tags' is not a number"), std::string::npos) << e;
}
