#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "ips/checkpoint.h"
#include "ips/model.h"
#include "ips/step.h"
#include "ips/torch_file.h"
#include "ips/train.h"
#include "test_support.h"
#include "test_util.h"

using namespace ips;
namespace fs = std::filesystem;
using test::lines_of;

namespace {

fs::path temp_dir(const std::string& name) {
    fs::path p = fs::temp_directory_path() / ("ips_test_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    fs::create_directories(p);
    return p;
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

// Three seeds, of which two must find the needle: selection can lock a patch out for good (once
// the needle scores below the noise it is never selected again, so nothing raises its score), and
// which seeds do that differs between libtorch versions and CPUs. Measured with this recipe over
// seeds 0-11 (accuracy after 10 epochs, 200 test bags): libtorch 1.13 11 of 12 at 0.985-1.000 and
// seed 7 locked out at 0.450; 2.6 10 of 12, seeds 7 and 10 at 0.430 / 0.530. Seeds 0-2 reach
// 0.990-0.995 on both. With random initial keys (N 48, M 4, the recipe before zero keys) 3 of 6
// seeds locked out on both versions.
TEST(Train, LearnsToFindTheOnePatchThatCarriesTheLabel) {
    torch::set_num_threads(1);
    auto start = std::chrono::steady_clock::now();
    int found = 0;
    std::string report;
    for (int seed = 0; seed < 3; ++seed) {
        Config cfg = test::tiny_bag_config(/*N=*/24, /*M=*/8, /*I=*/12);
        cfg.seed = seed;
        cfg.train.lr = 3e-3;
        cfg.train.wd = 0.01;
        cfg.train.B = cfg.train.B_seq = 16;
        cfg.train.n_epoch = 10;
        cfg.train.n_epoch_warmup = 1;
        cfg.select.shuffle = true;
        NeedleDataset train(320, cfg.data.N, 1), test(200, cfg.data.N, 2);
        IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
        attention_keys_zero(net);  // as train_run does with zero_keys: the first selections are the shuffle's
        auto opt = optimizer_make(net, cfg.train);
        std::mt19937_64 rng(static_cast<uint64_t>(seed));
        StepCounter counter{0, (train.size() + cfg.train.B - 1) / cfg.train.B};
        for (int epoch = 0; epoch < cfg.train.n_epoch; ++epoch) {
            for (int64_t s = 0; s < train.size(); s += cfg.train.B) {
                std::vector<Example> ex;
                for (int64_t i = s; i < std::min(train.size(), s + cfg.train.B); ++i) ex.push_back(train.get(i));
                train_step(net, *opt, cfg, ex, torch::kCPU, rng, counter);
            }
        }
        const double acc = evaluate(net, cfg, test, torch::kCPU, false).task_metric[0];
        found += acc >= 0.95;
        report += "seed " + std::to_string(seed) + ": " + std::to_string(acc) + " after " +
                  std::to_string(counter.step) + " steps\n";
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s", report.c_str());
    EXPECT_GE(found, 2) << "fewer than 2 of 3 seeds reached 0.95:\n" << report;
    EXPECT_LT(seconds, 60.0);
}

TEST(Train, ResumeReplaysTheUninterruptedRun) {
    Config cfg = test::tiny_bag_config(20, 4, 6);
    cfg.data.dataset = "synthetic";
    cfg.data.n_train = 10;
    cfg.data.n_test = 6;
    cfg.train.B = cfg.train.B_seq = 4;  // 3 steps per epoch, the last one partial
    cfg.train.n_epoch = 3;
    cfg.train.n_epoch_warmup = 1;
    cfg.select.shuffle = true;
    cfg.model.dropout = 0.1;
    cfg.model.attn_dropout = 0.1;
    fs::path straight = temp_dir("straight"), resumed = temp_dir("resumed");
    RunOptions opt;
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

// B_seq only groups images into selection calls (eager vs eager sequential): with the patch
// shuffle off, the same state gives the same selections, losses and parameters either way. The
// images of a group are encoded in one call, so only the convolutions' blocking differs.
TEST(Train, EagerSequentialTrainsAsEager) {
    Config cfg = config_load(std::string(IPS_SOURCE_DIR) + "/tests/fixtures/tiny_synthetic.yaml");
    cfg.select.shuffle = false;
    cfg.model.dropout = cfg.model.attn_dropout = 0;
    cfg.data.n_train = 10;  // 3 steps an epoch, the last one partial
    fs::path eager = temp_dir("bseq_eager"), sequential = temp_dir("bseq_sequential");
    RunOptions opt;
    opt.progress = false;
    opt.out_dir = eager.string();
    train_run(cfg, opt);
    cfg.train.B_seq = 1;
    opt.out_dir = sequential.string();
    train_run(cfg, opt);
    const auto a = lines_of(eager / "metrics.jsonl"), b = lines_of(sequential / "metrics.jsonl");
    ASSERT_EQ(a.size(), 2u);
    ASSERT_EQ(b.size(), 2u);
    for (size_t i = 0; i < a.size(); ++i) {
        const auto ja = nlohmann::json::parse(a[i]), jb = nlohmann::json::parse(b[i]);
        for (const char* key : {"train_loss", "test_loss"})
            EXPECT_NEAR(ja[key].get<double>(), jb[key].get<double>(), 1e-6 * std::abs(ja[key].get<double>()))
                << key << " of epoch " << i + 1;
    }
    IPSNet x = net_make(cfg.model, cfg.compute, 1), y = net_make(cfg.model, cfg.compute, 2);
    weights_load((eager / "last.pt").string(), x);
    weights_load((sequential / "last.pt").string(), y);
    const auto sx = state_dict_of(*x), sy = state_dict_of(*y);
    ASSERT_EQ(sx.size(), sy.size());
    for (size_t k = 0; k < sx.size(); ++k) {
        const auto& p = sx[k].second;
        const double scale = p.abs().max().item<double>() + 1e-12;
        EXPECT_LE((p.to(torch::kDouble) - sy[k].second.to(torch::kDouble)).abs().max().item<double>() / scale, 1e-5)
            << sx[k].first;
    }
    fs::remove_all(eager);
    fs::remove_all(sequential);
}
