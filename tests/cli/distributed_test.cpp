// Data-parallel training end to end (Gloo on loopback): K processes with global batch B train the
// same model as one process with B, started by --nproc-per-node, by the torchrun environment and
// by torchrun itself; a checkpoint resumes on another number of ranks; failures stop every rank
// with a message naming the cause.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "ips/feature_bag.h"
#include "ips/torch_file.h"
#include "run_compare.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using ips::test::command_run;
using ips::test::ips_run;
using ips::test::lines_of;
using ips::test::TempDir;
using ips::test::runs_expect_equal;

const std::string kDir = IPS_SOURCE_DIR;
const std::string kBin = IPS_BINARY;
// Without shuffling and dropout, whose random draws differ by rank. n_train = 5 with B = 4 leaves
// a last batch of one example: with two ranks the second one stands in.
const std::string kImage = kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --threads 1 --quiet --set shuffle=false "
                                  "--set dropout=0 --set attn_dropout=0 --set n_train=5 --set sync_bn=true";

// How far the image runs' models may drift between 1 and 2 ranks (largest ||a - b|| / ||b|| over the
// tensors): the trunk's BatchNorm biases have gradients that are sums over patches that nearly
// cancel, and Adam scales the ranks' different rounding of them to steps of up to ±lr. Since the
// schedule counts steps from 1 as the reference's does, all 4 steps move the weights (the first
// ran at lr 0 before), and the BatchNorm biases (encoder.1.bias, encoder.4.0.bn2.bias, encoder.5.0.bn1.bias)
// reach 1.0-1.1e-5 where the bound was 1e-5 (libtorch 2.6: encoder.1.bias 3.2e-5); encoder.0.weight,
// the largest weight difference, 8.5e-7 (2.6: 1.8e-6).
constexpr double kImageModelTol = 1e-4;

// The torchrun environment by hand: `world` processes in the background, then wait for all.
std::string env_launch(int world, int port, const std::string& args) {
    std::string cmd = "(";
    for (int r = 0; r < world; ++r)
        cmd += "RANK=" + std::to_string(r) + " WORLD_SIZE=" + std::to_string(world) + " LOCAL_RANK=" + std::to_string(r) +
               " LOCAL_WORLD_SIZE=" + std::to_string(world) + " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
               " " + kBin + " " + args + " & ";
    return cmd + "wait)";
}

TEST(Distributed, ImageRunWithSyncBatchNormEqualsOneProcessHowEverStarted) {
    TempDir dir("ips_dist_image");
    auto one = ips_run("train " + kImage + " --out " + dir / "one");
    ASSERT_EQ(one.code, 0) << one.output;

    auto two = ips_run("train " + kImage + " --nproc-per-node 2 --out " + dir / "two");
    ASSERT_EQ(two.code, 0) << two.output;
    EXPECT_NE(two.output.find("x 2 ranks"), std::string::npos) << two.output;
    runs_expect_equal(dir.path / "one", dir.path / "two", {}, 0, 1e-5, kImageModelTol);

    auto env = command_run(env_launch(2, ips::test::port_free(), "train " + kImage + " --out " + dir / "env"));
    ASSERT_EQ(env.code, 0) << env.output;
    runs_expect_equal(dir.path / "one", dir.path / "env", {}, 0, 1e-5, kImageModelTol);

    // torchrun's own code (tests/peer/torchrun.py: Debian's 2.6 needs its store on the classic
    // transport). -r 1 -t 1: 1.13's torchrun fails on Python 3.11 with its default "-r 0"
    // (Std.NONE no longer iterates); 1 sends stdout to its logs and the console.
    auto torchrun = command_run(ips::test::torch_python() + " " + kDir + "/tests/peer/torchrun.py --nproc_per_node 2 -r 1 -t 1 " +
                                "--master_port " + std::to_string(ips::test::port_free()) + " --no_python " + kBin + " train " +
                                kImage + " --out " + dir / "torchrun");
    ASSERT_EQ(torchrun.code, 0) << torchrun.output;
    runs_expect_equal(dir.path / "one", dir.path / "torchrun", {}, 0, 1e-5, kImageModelTol);
}

// The projector's BatchNorm1d sees every rank's patches only with sync_bn; without it each rank
// normalises its own, as PyTorch's DDP does, and the runs differ by design.
TEST(Distributed, FeatureBagRunEqualsOneProcess) {
    TempDir dir("ips_dist_bags");
    torch::manual_seed(5);
    std::ofstream train(dir.path / "train.csv"), test(dir.path / "test.csv");
    train << "path,metastases\n";
    test << "path,metastases\n";
    for (int k = 0; k < 15; ++k) {
        ips::FeatureBag bag;
        bag.features = torch::randn({12 + 3 * k, 32}) + (k % 2 ? 0.7 : 0.0);
        const std::string name = "bag" + std::to_string(k) + ".h5";
        ips::feature_bag_write(dir / name, bag);
        (k < 10 ? train : test) << name << "," << (k % 2) << "\n";
    }
    train.close();
    test.close();
    const std::string args = "train " + kDir + "/tests/fixtures/bags_tiny.yaml --device cpu --threads 1 --quiet --set shuffle=false "
                             "--set n_epoch=3 --set sync_bn=true --set data_dir=" + dir.path.string();
    auto one = ips_run(args + " --out " + dir / "one");
    ASSERT_EQ(one.code, 0) << one.output;
    auto two = ips_run(args + " --nproc-per-node 2 --out " + dir / "two");
    ASSERT_EQ(two.code, 0) << two.output;
    // lr 1e-3, 3 epochs of 3 steps. In eval mode that bias and running mean no longer cancel
    // exactly, so the test losses carry their noise: 2.4e-5 seen with libtorch 2.6.
    runs_expect_equal(dir.path / "one", dir.path / "two", {"encoder.1.bias", "encoder.2.running_mean"}, 9e-3, 1e-4);
    // The AUC comes from every rank's predictions gathered.
    const auto last = nlohmann::json::parse(lines_of(dir.path / "two" / "metrics.jsonl").back());
    EXPECT_TRUE(last["test"]["metastases"]["auc"].is_number()) << last;
    EXPECT_EQ(last["world_size"], 2);
}

// Two epochs (4 steps): over more steps Adam turns the rounding differences of gradients that are
// nearly 0 into steps of up to ±lr, and this tiny model has such weights (2.6: 5.6e-4 after 6 steps).
TEST(Distributed, CheckpointOfTwoRanksResumesOnOne) {
    TempDir dir("ips_dist_resume");
    ASSERT_EQ(ips_run("train " + kImage + " --out " + dir / "one").code, 0);
    auto first = ips_run("train " + kImage + " --nproc-per-node 2 --stop-after 1 --out " + dir / "mixed");
    ASSERT_EQ(first.code, 0) << first.output;
    auto rest = ips_run("train " + kImage + " --resume --out " + dir / "mixed");
    ASSERT_EQ(rest.code, 0) << rest.output;
    runs_expect_equal(dir.path / "one", dir.path / "mixed", {}, 0, 1e-5, kImageModelTol);
    // And back: one rank's checkpoint on four.
    auto four = ips_run("train " + kImage + " --set n_epoch=3 --nproc-per-node 4 --resume --out " + dir / "mixed");
    ASSERT_EQ(four.code, 0) << four.output;
    EXPECT_EQ(lines_of(dir.path / "mixed" / "metrics.jsonl").size(), 3u);
}

// SIGTERM to the launcher (what a scheduler sends), or Ctrl-C to the process group: the launcher
// passes it on, the ranks agree to stop after the same step, rank 0 writes the checkpoint, the job
// ends with 128 + signal, and it resumes to what the uninterrupted job gives, bit for bit.
TEST(Distributed, SigtermToTheLauncherStopsEveryRankAfterOneStepAndResumes) {
    TempDir dir("ips_dist_sigterm");
    const std::string args = "train " + kImage + " --set n_train=16 --set B=2 --set B_seq=2 --set n_epoch=3 --nproc-per-node 2";
    ASSERT_EQ(ips_run(args + " --out " + dir / "straight").code, 0);
    // Once epoch 1 has ended (the workers run): mid-epoch 2, or in a test pass.
    auto stopped = command_run("(" + kBin + " " + args + " --out " + dir / "two" +
                               " & pid=$!; for i in $(seq 400); do sleep 0.05; [ -s " + dir / "two/metrics.jsonl" +
                               " ] && break; done; kill -TERM $pid; wait $pid)");
    EXPECT_EQ(stopped.code, 143) << stopped.output;
    // Each rank says where it stopped: mid-epoch, or after the test pass the signal arrived in.
    EXPECT_NE(stopped.output.find("with --resume continues"), std::string::npos) << stopped.output;
    EXPECT_EQ(stopped.output.find("stopping the other"), std::string::npos) << stopped.output;  // no rank failed
    auto resumed = ips_run(args + " --resume --out " + dir / "two");
    ASSERT_EQ(resumed.code, 0) << resumed.output;
    ips::test::runs_expect_identical(dir.path / "straight", dir.path / "two");

    // Ctrl-C: SIGINT to the whole process group, workers included. The launcher asks them with
    // SIGTERM, not a second SIGINT (which would end them before their checkpoint), and ends with 130.
    auto ctrl_c = command_run("(setsid " + kBin + " " + args + " --out " + dir / "ctrl_c" +
                              " & pid=$!; for i in $(seq 400); do sleep 0.05; [ -s " + dir / "ctrl_c/metrics.jsonl" +
                              " ] && break; done; env kill -s INT -- -$pid; wait $pid)");
    EXPECT_EQ(ctrl_c.code, 130) << ctrl_c.output;
    EXPECT_NE(ctrl_c.output.find("with --resume continues"), std::string::npos) << ctrl_c.output;
    ASSERT_EQ(ips_run(args + " --resume --out " + dir / "ctrl_c").code, 0);
    ips::test::runs_expect_identical(dir.path / "straight", dir.path / "ctrl_c");
}

TEST(Distributed, BadLaunchesFailWithTheCauseNamed) {
    TempDir dir("ips_dist_bad");
    auto odd = ips_run("train " + kImage + " --set B=3 --nproc-per-node 2 --out " + dir / "odd");
    EXPECT_NE(odd.code, 0);
    EXPECT_NE(odd.output.find("B=3 does not divide by the world size 2"), std::string::npos) << odd.output;
    EXPECT_NE(odd.output.find("ips: rank"), std::string::npos) << odd.output;  // the launcher's word

    // Rank 1 never starts: rank 0 gives up after --dist-timeout and names it.
    auto alone = command_run("RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(ips::test::port_free()) + " " +
                             kBin + " train " + kImage + " --dist-timeout 2 --out " + dir / "alone");
    EXPECT_NE(alone.code, 0);
    EXPECT_NE(alone.output.find("rank 1 of 2 never joined"), std::string::npos) << alone.output;

    // Configurations that differ between ranks are refused at the start.
    const std::string port = std::to_string(ips::test::port_free());
    auto mixed = command_run("(RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " +
                             kBin + " train " + kImage + " --dist-timeout 20 --out " + dir / "m & RANK=1 WORLD_SIZE=2 " +
                             "MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " " + kBin + " train " +
                             kImage + " --set lr=0.5 --dist-timeout 20 --out " + dir / "m; wait)");
    EXPECT_NE(mixed.output.find("rank 1 runs a different configuration from rank 0"), std::string::npos) << mixed.output;
    EXPECT_NE(mixed.output.find("rank 1 stopped while joining"), std::string::npos) << mixed.output;
}

TEST(Distributed, AKilledRankStopsTheOthersNamingIt) {
    TempDir dir("ips_dist_kill");
    const std::string long_run = "train " + kImage + " --set n_epoch=500 --set n_test=1 --dist-timeout 60 --out ";
    // Started by hand: rank 0 finds rank 1 gone and says so.
    const std::string port = std::to_string(ips::test::port_free());
    const std::string env = " WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + port + " ";
    // The kill comes once both ranks train (the first epoch's line), however slow the machine.
    const auto training = [&](const std::string& run) {
        return "for i in $(seq 1200); do [ -s " + dir / run + "/metrics.jsonl ] && break; sleep 0.1; done; ";
    };
    auto by_hand = command_run("RANK=0" + env + kBin + " " + long_run + dir / "a > " + dir / "r0.log 2>&1 & P0=$!; RANK=1" +
                               env + kBin + " " + long_run + dir / "a > /dev/null 2>&1 & P1=$!; " + training("a") +
                               "t=$(date +%s); kill -9 $P1; wait $P0; echo rank0=$? after=$(( $(date +%s) - t )); cat " +
                               dir / "r0.log");
    EXPECT_NE(by_hand.output.find("rank0=1"), std::string::npos) << by_hand.output;
    EXPECT_NE(by_hand.output.find("rank 1 has stopped"), std::string::npos) << by_hand.output;
    const auto after = by_hand.output.find(" after=");
    ASSERT_NE(after, std::string::npos) << by_hand.output;
    EXPECT_LT(std::stoi(by_hand.output.substr(after + 7)), 30) << by_hand.output;  // seconds from the kill

    // Under the launcher: it names the worker and stops the other.
    auto launched = command_run("(" + kBin + " " + long_run + dir / "b --nproc-per-node 2 & L=$!; " + training("b") +
                                "pkill -9 -n -P $L; wait $L; echo launcher=$?) 2>&1");
    EXPECT_NE(launched.output.find("ips: rank 1 was killed by signal 9"), std::string::npos) << launched.output;
    EXPECT_NE(launched.output.find("launcher=137"), std::string::npos) << launched.output;
}

}  // namespace
