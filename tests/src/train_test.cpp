#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "ips/checkpoint.h"
#include "ips/torch_file.h"
#include "ips/train.h"
#include "test_util.h"

using namespace ips;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
    fs::path p = fs::temp_directory_path() / ("ips_test_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
}

std::vector<std::string> lines_of(const fs::path& p) {
    std::ifstream in(p);
    std::vector<std::string> out;
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
}

// Drops the wall-clock field so that runs can be compared line by line.
std::string without_seconds(std::string line) {
    auto pos = line.find("\"seconds\":");
    auto end = line.find(',', pos);
    return line.erase(pos, end - pos + 1);
}

// One patch in N carries the label: class 1 bags hold a "needle" patch along +v, class 0 along -v;
// all other patches are noise. A model must find the needle to be right.
struct NeedleDataset : Dataset {
    NeedleDataset(int64_t n, int64_t N, uint64_t seed) : n_items(n), n_patches(N), seed(seed) {}
    int64_t size() const override { return n_items; }
    Example get(int64_t i) override {
        std::mt19937_64 rng(seed * 7777 + static_cast<uint64_t>(i));
        torch::manual_seed(seed * 7777 + static_cast<uint64_t>(i));
        auto bag = torch::randn({n_patches, 8}) * 0.5;
        const int64_t label = static_cast<int64_t>(rng() % 2);
        const int64_t where = static_cast<int64_t>(rng() % n_patches);
        auto v = torch::tensor({3.f, -3.f, 3.f, -3.f, 0.f, 0.f, 0.f, 0.f});
        bag[where] = label ? v : -v;
        return {tensor_source_make(bag), {torch::tensor(label)}, ""};
    }
    int64_t n_items, n_patches;
    uint64_t seed;
};

}  // namespace

TEST(Train, LearningRateWarmsUpThenFollowsCosine) {
    Config c;
    c.lr = 1e-3;
    c.n_epoch = 10;
    c.n_epoch_warmup = 2;
    const int64_t spe = 5;
    EXPECT_DOUBLE_EQ(lr_at(c, 0, spe), 0.0);
    EXPECT_NEAR(lr_at(c, 5, spe), 0.5e-3, 1e-12);
    EXPECT_NEAR(lr_at(c, 10, spe), 1e-3, 1e-12);
    EXPECT_NEAR(lr_at(c, 30, spe), 0.5 * (1e-3 + 1e-6), 1e-12);  // half way through the cosine
    EXPECT_NEAR(lr_at(c, 50, spe), 1e-6, 1e-12);                 // 0.001 * lr at the end
    c.n_epoch_warmup = 0;
    EXPECT_NEAR(lr_at(c, 0, spe), 1e-3, 1e-12);
}

TEST(Train, Metrics) {
    auto probs = torch::tensor({{0.9f, 0.1f}, {0.2f, 0.8f}, {0.6f, 0.4f}, {0.3f, 0.7f}});
    EXPECT_DOUBLE_EQ(metric_accuracy(probs, torch::tensor({0, 1, 1, 1})), 0.75);
    auto ml = torch::tensor({{0.9f, 0.2f}, {0.7f, 0.6f}});
    EXPECT_DOUBLE_EQ(metric_multilabel_accuracy(ml, torch::tensor({{1.f, 0.f}, {1.f, 0.f}})), 0.5);
    // AUC: 3 positives, 2 negatives; one tie between a positive and a negative counts half.
    auto s = torch::tensor({0.1, 0.4, 0.35, 0.8, 0.4});
    auto l = torch::tensor({0, 0, 1, 1, 1});
    EXPECT_NEAR(metric_auc(s, l), (1 + 2 + 1.5) / 6.0, 1e-12);  // pairs won by each positive
    EXPECT_DOUBLE_EQ(metric_auc(torch::tensor({0.2, 0.9}), torch::tensor({0, 1})), 1.0);
    EXPECT_TRUE(std::isnan(metric_auc(torch::tensor({0.2, 0.9}), torch::tensor({1, 1}))));
}

TEST(Train, LossIsMeanOfTaskLosses) {
    Config c = test::tiny_bag_config();
    c.tasks.push_back(Task{0, "multi", ActFn::sigmoid, Metric::multilabel_accuracy});
    auto logits_a = torch::tensor({{2.f, -1.f}});
    auto logits_b = torch::tensor({{0.5f, -0.5f}});
    auto target_a = torch::tensor({1}, torch::kLong);
    auto target_b = torch::tensor({{1.f, 0.f}});
    std::vector<double> per_task;
    double loss = loss_compute(c, {logits_a, logits_b}, {target_a, target_b}, &per_task).item<double>();
    double pa = std::exp(-1.0) / (std::exp(2.0) + std::exp(-1.0));
    double nll = -std::log(pa + 1e-6);
    double s1 = 1 / (1 + std::exp(-0.5)), s2 = 1 / (1 + std::exp(0.5));
    double bce = -(std::log(s1) + std::log(1 - s2)) / 2;
    EXPECT_NEAR(per_task[0], nll, 1e-5);
    EXPECT_NEAR(per_task[1], bce, 1e-5);
    EXPECT_NEAR(loss, (nll + bce) / 2, 1e-5);
}

TEST(Train, LearnsToFindTheOnePatchThatCarriesTheLabel) {
    torch::set_num_threads(2);
    Config cfg = test::tiny_bag_config(/*N=*/48, /*M=*/4, /*I=*/12);
    cfg.lr = 3e-3;
    cfg.wd = 0.01;
    cfg.B = cfg.B_seq = 16;
    cfg.n_epoch = 10;
    cfg.n_epoch_warmup = 1;
    cfg.shuffle = true;
    NeedleDataset train(320, 48, 1), test(200, 48, 2);
    IPSNet net = net_make(cfg);
    torch::optim::AdamW opt(net->parameters(), torch::optim::AdamWOptions(cfg.lr).weight_decay(cfg.wd));
    std::mt19937_64 rng(0);
    const int64_t spe = (train.size() + cfg.B - 1) / cfg.B;
    int64_t step = 0;
    auto start = std::chrono::steady_clock::now();
    for (int epoch = 0; epoch < cfg.n_epoch; ++epoch) {
        net->train();
        for (int64_t s = 0; s < train.size(); s += cfg.B) {
            std::vector<Example> ex;
            for (int64_t i = s; i < std::min(train.size(), s + cfg.B); ++i) ex.push_back(train.get(i));
            Batch b = batch_make(net, cfg, ex, torch::kCPU, rng, true);
            auto loss = loss_compute(cfg, net->forward(b.patches, b.idx, b.valid), b.targets);
            for (auto& g : opt.param_groups())
                static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr_at(cfg, step++, spe));
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
    }
    EvalResult r = evaluate(net, cfg, test, torch::kCPU, false);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_GE(r.task_metric[0], 0.95) << "after " << step << " steps";
    EXPECT_LT(seconds, 60.0);
}

TEST(Train, CheckpointRoundTripAndErrors) {
    fs::path dir = temp_dir("ckpt");
    Config cfg = test::tiny_bag_config();
    IPSNet a = net_make(cfg);
    torch::optim::AdamW opt(a->parameters(), torch::optim::AdamWOptions(1e-3));
    CheckpointMeta meta{3, 42, 0.5, config_to_yaml(cfg)};
    checkpoint_save((dir / "a.pt").string(), a, &opt, meta);
    EXPECT_FALSE(fs::exists(dir / "a.pt.tmp"));
    cfg.seed = 99;
    IPSNet b = net_make(cfg);
    CheckpointMeta got = checkpoint_load((dir / "a.pt").string(), b, nullptr);
    EXPECT_EQ(got.epoch, 3);
    EXPECT_EQ(got.step, 42);
    EXPECT_EQ(got.config_yaml, meta.config_yaml);
    for (const auto& item : a->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), b->named_parameters()[item.key()]));

    // A checkpoint of another architecture names the mismatched parameter and the file.
    Config other = test::tiny_bag_config();
    other.D = 32;
    IPSNet c = net_make(other);
    try {
        checkpoint_load((dir / "a.pt").string(), c, nullptr);
        FAIL();
    } catch (const std::runtime_error& e) {
        std::string msg = e.what();
        EXPECT_NE(msg.find("a.pt"), std::string::npos) << msg;
        EXPECT_NE(msg.find("shape"), std::string::npos) << msg;
    }
    // Truncated and missing files.
    {
        std::ifstream in(dir / "a.pt", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), {});
        std::ofstream(dir / "cut.pt", std::ios::binary) << bytes.substr(0, bytes.size() / 2);
    }
    EXPECT_THROW(checkpoint_load((dir / "cut.pt").string(), b, nullptr), std::runtime_error);
    try {
        checkpoint_load((dir / "none.pt").string(), b, nullptr);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("none.pt"), std::string::npos);
    }
    fs::remove_all(dir);
}

TEST(Train, ResumeReplaysTheUninterruptedRun) {
    Config cfg = test::tiny_bag_config(20, 4, 6);
    cfg.dataset = "synthetic";
    cfg.n_train = 10;
    cfg.n_test = 6;
    cfg.B = cfg.B_seq = 4;  // 3 steps per epoch, the last one partial
    cfg.n_epoch = 3;
    cfg.n_epoch_warmup = 1;
    cfg.shuffle = true;
    cfg.dropout = 0.1;
    cfg.attn_dropout = 0.1;
    fs::path straight = temp_dir("straight"), resumed = temp_dir("resumed");
    TrainOptions opt;
    opt.progress = false;
    opt.out_dir = straight.string();
    auto full = train_run(cfg, opt);
    ASSERT_EQ(full.size(), 3u);
    opt.out_dir = resumed.string();
    opt.stop_after_epoch = 1;
    auto first = train_run(cfg, opt);
    ASSERT_EQ(first.size(), 1u);
    opt.stop_after_epoch = -1;
    opt.resume = true;
    auto rest = train_run(cfg, opt);
    ASSERT_EQ(rest.size(), 2u);
    auto a = lines_of(straight / "metrics.jsonl"), b = lines_of(resumed / "metrics.jsonl");
    ASSERT_EQ(a.size(), 3u);
    ASSERT_EQ(b.size(), 3u);
    for (size_t i = 0; i < 3; ++i) EXPECT_EQ(without_seconds(a[i]), without_seconds(b[i]));
    for (const char* f : {"config.yaml", "last.pt", "best.pt", "metrics.jsonl"}) EXPECT_TRUE(fs::exists(straight / f)) << f;
    fs::remove_all(straight);
    fs::remove_all(resumed);
}

TEST(Train, WeightsLoadTakesReferenceLayoutStateDicts) {
    fs::path dir = temp_dir("weights");
    Config cfg = test::tiny_bag_config();
    IPSNet a = net_make(cfg);
    // A state dict with the reference's key names, written as torch.save writes it.
    torch_file_write((dir / "ref.pt").string(), state_dict_of(*a));
    cfg.seed = 5;
    IPSNet b = net_make(cfg);
    weights_load((dir / "ref.pt").string(), b);
    for (const auto& item : a->named_parameters()) EXPECT_TRUE(torch::equal(item.value(), b->named_parameters()[item.key()]));
    // Our own checkpoints go through the same entry point.
    checkpoint_save((dir / "ours.pt").string(), a, nullptr, CheckpointMeta{});
    IPSNet c = net_make(cfg);
    weights_load((dir / "ours.pt").string(), c);
    EXPECT_TRUE(torch::equal(a->named_parameters()["transf.crs_attn.q"], c->named_parameters()["transf.crs_attn.q"]));
    // Another architecture: the mismatched key is named.
    Config other = test::tiny_bag_config();
    other.D = 32;
    IPSNet d = net_make(other);
    try {
        weights_load((dir / "ref.pt").string(), d);
        FAIL();
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find("transf.crs_attn.q"), std::string::npos) << e.what();
    }
    std::ofstream(dir / "junk.pt") << "junk";
    EXPECT_THROW(weights_load((dir / "junk.pt").string(), d), std::runtime_error);
    fs::remove_all(dir);
}
