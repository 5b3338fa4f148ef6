// Faults during training, end to end on the real binary (docs/RELIABILITY.md): SIGTERM / SIGINT
// stop a run after the current step and --resume continues it exactly; kill -9 at twenty moments
// (checkpoint writes and the time before the first checkpoint included) loses nothing; a full disk
// keeps the last good checkpoint; a NaN loss stops the run naming what it needs to, or is skipped.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>

#include "ips/checkpoint.h"
#include "ips/feature_bag.h"
#include "run_compare.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using ips::test::command_run;
using ips::test::CommandResult;
using ips::test::ips_run;
using ips::test::lines_of;
using ips::test::runs_expect_identical;
using ips::test::TempDir;

const std::string kDir = IPS_SOURCE_DIR;
const std::string kBin = IPS_BINARY;
// 8 batches of 2 per epoch, 3 epochs, with selection shuffles and dropout: every random draw a
// resumed run has to replay. One thread: bit-for-bit equal runs.
const std::string kRun = "train " + kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --threads 1 --quiet "
                         "--set n_train=16 --set B=2 --set B_seq=2 --set n_epoch=3 --set dropout=0.1 "
                         "--set attn_dropout=0.1";

CommandResult run_with(const std::string& env, const std::string& args) {
    return command_run(env + " " + kBin + " " + args);
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// Files a writer killed mid-write would leave: NAME.tmp.<pid>.
std::vector<std::string> temporaries_in(const fs::path& dir) {
    std::vector<std::string> found;
    for (const auto& e : fs::directory_iterator(dir))
        if (contains(e.path().filename().string(), ".tmp")) found.push_back(e.path().filename().string());
    return found;
}

class Reliability : public testing::Test {
protected:
    static void SetUpTestSuite() {
        straight_ = new TempDir("ips_reliability_straight");
        const auto r = ips_run(kRun + " --out " + (*straight_ / "run"));
        ASSERT_EQ(r.code, 0) << r.output;
    }
    static void TearDownTestSuite() { delete straight_; }
    static fs::path straight() { return straight_->path / "run"; }
    static TempDir* straight_;
};
TempDir* Reliability::straight_ = nullptr;

TEST_F(Reliability, SigtermOrSigintStopAfterTheStepAndResumeExactly) {
    struct Case {
        std::string fault, said;
        int code;
    };
    // At exact points: mid-epoch 1, mid-epoch 2, and inside a test pass (the epoch's training is
    // kept; the resumed run tests it).
    const std::vector<Case> cases = {
        {"train-step@5:TERM", "stopped by SIGTERM in epoch 1 after batch 5 of 8 (step 5)", 143},
        {"train-step@11:INT", "stopped by SIGINT in epoch 2 after batch 3 of 8 (step 11)", 130},
        {"eval-batch@3:TERM", "stopped by SIGTERM in epoch 2 after batch 8 of 8 (step 16)", 143},
    };
    for (const auto& c : cases) {
        SCOPED_TRACE(c.fault);
        TempDir dir("ips_reliability_signal");
        const auto stopped = run_with("IPS_FAULT=" + c.fault, kRun + " --out " + dir / "run");
        EXPECT_EQ(stopped.code, c.code) << stopped.output;
        EXPECT_TRUE(contains(stopped.output, c.said)) << stopped.output;
        EXPECT_TRUE(contains(stopped.output, "--resume continues exactly there")) << stopped.output;
        const auto meta = ips::checkpoint_meta(dir / "run/last.pt");
        EXPECT_GT(meta.epoch_batches, 0);
        const auto resumed = ips_run(kRun + " --resume --out " + dir / "run");
        ASSERT_EQ(resumed.code, 0) << resumed.output;
        EXPECT_TRUE(contains(resumed.output, "after batch " + std::to_string(meta.epoch_batches) + " of 8")) << resumed.output;
        runs_expect_identical(straight(), dir.path / "run");
    }
}

TEST_F(Reliability, SigtermFromOutsideAtARandomMomentLosesNothing) {
    std::mt19937 rng(std::random_device{}());
    for (int k = 0; k < 3; ++k) {
        TempDir dir("ips_reliability_timeout");
        // Anywhere from start-up (no handler yet: the default action ends it, nothing written)
        // to the end of the run.
        const double after = std::uniform_real_distribution<double>(0.05, 1.5)(rng);
        SCOPED_TRACE("SIGTERM after " + std::to_string(after) + " s");
        const auto stopped = command_run("timeout -s TERM " + std::to_string(after) + " " + kBin + " " + kRun +
                                         " --out " + dir / "run");
        EXPECT_TRUE(stopped.code == 0 || stopped.code == 124) << stopped.output;
        if (stopped.code == 124 && fs::exists(dir.path / "run/last.pt")) {
            EXPECT_NO_THROW(ips::checkpoint_meta(dir / "run/last.pt"));
        }
        const auto resumed = ips_run(kRun + " --resume --out " + dir / "run");
        ASSERT_EQ(resumed.code, 0) << resumed.output;
        runs_expect_identical(straight(), dir.path / "run");
    }
}

// After any kill: last.pt, when there is one, is a whole checkpoint, and metrics.jsonl holds whole
// lines of consecutive epochs, at most one past the checkpoint (written just before it).
void run_folder_expect_sound(const fs::path& run) {
    int64_t epochs = 0;
    if (fs::exists(run / "last.pt")) {
        try {
            epochs = ips::checkpoint_meta((run / "last.pt").string()).epoch;
        } catch (const std::exception& e) {
            ADD_FAILURE() << "last.pt is damaged: " << e.what();
        }
    }
    if (!fs::exists(run / "metrics.jsonl")) return;
    const auto lines = lines_of(run / "metrics.jsonl");
    for (size_t i = 0; i < lines.size(); ++i) {
        const auto j = nlohmann::json::parse(lines[i], nullptr, false);
        ASSERT_FALSE(j.is_discarded()) << "line " << i + 1 << ": " << lines[i];
        EXPECT_EQ(j["epoch"], static_cast<int64_t>(i) + 1);
    }
    EXPECT_LE(static_cast<int64_t>(lines.size()), epochs + 1);
}

TEST_F(Reliability, KilledAtTwentyMomentsLosesNothing) {
    const unsigned seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed) + " (the kills are drawn from it)");
    std::mt19937 rng(seed);
    const auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
    int kills = 0, tries = 0;
    std::string log;
    // A kill that lands after a checkpoint moves the run on; one that lands before the next makes
    // it redo that work. When a run reaches its end before twenty kills, it is checked and a new
    // one takes the remaining kills.
    while (kills < 20 && tries < 100) {
        TempDir dir("ips_reliability_kill");
        const std::string out = " --resume --out " + dir / "run";
        bool ended = false;
        while (kills < 20 && tries++ < 100) {
            std::string how;
            // The first two: while config.yaml is written, and after a step with no checkpoint yet.
            const int kind = log.empty() ? 0 : kills == 1 ? 1 : pick(0, 6);
            switch (kind) {
                case 0: how = "IPS_FAULT=atomic-before-rename@" + std::to_string(log.empty() ? 1 : pick(1, 3)); break;
                case 1: how = "IPS_FAULT=train-step@" + std::to_string(kills == 1 ? 1 : pick(1, 8)); break;
                case 2: how = "IPS_FAULT=atomic-after-rename@" + std::to_string(pick(1, 3)); break;
                case 3: how = "IPS_FAULT=torch-file-record-written@" + std::to_string(pick(1, 80)); break;
                case 4: how = "IPS_FAULT=epoch-end@1"; break;
                case 5: how = "IPS_FAULT=eval-batch@" + std::to_string(pick(1, 2)); break;
                default: how = "timeout -s KILL " + std::to_string(std::uniform_real_distribution<double>(0.05, 1.2)(rng)); break;
            }
            const CommandResult r = kind == 6 ? command_run(how + " " + kBin + " " + kRun + out) : run_with(how, kRun + out);
            log += how + " -> " + std::to_string(r.code) + "\n";
            if (r.code == 0) {  // the run reached its end before this kill's moment
                ended = true;
                break;
            }
            ASSERT_EQ(r.code, 137) << how << "\n" << r.output;
            ++kills;
            run_folder_expect_sound(dir.path / "run");
        }
        SCOPED_TRACE(log);
        if (!ended) {
            const auto last = ips_run(kRun + out);
            ASSERT_EQ(last.code, 0) << last.output;
        }
        runs_expect_identical(straight(), dir.path / "run");
        EXPECT_TRUE(fs::exists(dir.path / "run/best.pt"));
        EXPECT_EQ(temporaries_in(dir.path / "run"), std::vector<std::string>{});
        log += "-- the run ended and equals the uninterrupted one\n";
    }
    EXPECT_EQ(kills, 20) << log;
}

// A small file system that fills up: a tmpfs in a private mount namespace (unshare -rm, so no
// root is needed); as root where user namespaces are refused (a chroot, as in the Debian 13 check),
// a private mount namespace, or else the tmpfs mounted and unmounted around the script. Runs
// `script` with the mount point in $M and returns its result.
CommandResult with_small_disk(const std::string& script, const fs::path& mount_point, const std::string& size) {
    const std::string body = "set -u; M=" + mount_point.string() + "; mount -t tmpfs -o size=" + size +
                             " tmpfs \"$M\" || exit 99; trap 'umount \"$M\"' EXIT\n" + script;
    const std::string file = mount_point.string() + ".sh";
    std::ofstream(file) << body;
    std::vector<std::string> ways = {"unshare -rm bash " + file};
    if (geteuid() == 0) ways.insert(ways.end(), {"unshare -m bash " + file, "bash " + file});
    CommandResult r{99, ""};
    for (const auto& way : ways) {
        r = command_run(way);
        const bool no_namespace = r.output.rfind("unshare:", 0) == 0;
        if (r.code != 99 && !no_namespace) break;
    }
    return r;
}

TEST_F(Reliability, AFullDiskKeepsTheLastGoodCheckpointAndSaysSo) {
    TempDir dir("ips_reliability_disk");
    fs::create_directories(dir.path / "mnt");
    // 1. Epoch 1 fits. The disk is then filled but for less than 64 KiB: epoch 2's metrics line
    //    fits, its 8.6 MB checkpoint does not, and last.pt stays epoch 1's byte for byte.
    // 2. A second run into the same config, with the disk full to the last page: its first metrics
    //    line cannot be written, and metrics.jsonl stays whole (empty).
    // 3. Freed, run 1 resumes (dropping its orphan epoch-2 line) and ends as the uninterrupted run.
    const std::string ips = kBin + " " + kRun + " --out $M/run";
    const std::string script =
        ips + " --stop-after 1 >/dev/null 2>&1 || exit 98\n"
        "cp $M/run/last.pt " + dir / "good.pt\n"
        "dd if=/dev/zero of=$M/fill bs=64k >/dev/null 2>&1\n"
        + ips + " --resume > " + dir / "ckpt.log" + " 2>&1; echo $? > " + dir / "ckpt.code\n"
        "cp $M/run/last.pt " + dir / "ckpt.pt; ls $M/run > " + dir / "ckpt.ls\n"
        "rm $M/fill; mkdir $M/run2; cp $M/run/config.yaml $M/run2/\n"
        "dd if=/dev/zero of=$M/fill2 bs=4k >/dev/null 2>&1\n"
        + kBin + " " + kRun + " --out $M/run2 > " + dir / "line.log" + " 2>&1; echo $? > " + dir / "line.code\n"
        "cp $M/run2/metrics.jsonl " + dir / "line.jsonl; ls $M/run2 > " + dir / "line.ls\n"
        "rm $M/fill2\n"
        + ips + " --resume > " + dir / "end.log" + " 2>&1; echo $? > " + dir / "end.code\n"
        "mkdir -p " + dir / "end" + "; cp $M/run/* " + dir / "end/\n";
    const auto r = with_small_disk(script, dir.path / "mnt", "24m");
    ASSERT_EQ(r.code, 0) << "could not mount a small tmpfs (unshare -rm, or as root unshare -m): " << r.output;
    const auto text = [&](const std::string& name) { return ips::test::file_text(dir.path / name); };
    const std::string good = text("good.pt");
    ASSERT_FALSE(good.empty());

    const std::string ckpt = text("ckpt.log");
    EXPECT_EQ(text("ckpt.code"), "1\n") << ckpt;
    EXPECT_TRUE(contains(ckpt, "cannot write '" + dir / "mnt/run/last.pt' (write failed: No space left on device)")) << ckpt;
    EXPECT_TRUE(contains(ckpt, "the last good checkpoint is " + dir / "mnt/run/last.pt (epoch 1)")) << ckpt;
    EXPECT_TRUE(text("ckpt.pt") == good);
    EXPECT_FALSE(contains(text("ckpt.ls"), ".tmp")) << text("ckpt.ls");

    const std::string line = text("line.log");
    EXPECT_EQ(text("line.code"), "1\n") << line;
    EXPECT_TRUE(contains(line, "cannot append to '" + dir / "mnt/run2/metrics.jsonl': No space left on device")) << line;
    EXPECT_TRUE(contains(line, "no checkpoint was written yet")) << line;
    EXPECT_EQ(text("line.jsonl"), "");
    EXPECT_FALSE(contains(text("line.ls"), ".tmp")) << text("line.ls");

    EXPECT_EQ(text("end.code"), "0\n") << text("end.log");
    runs_expect_identical(straight(), dir.path / "end");
}

TEST(ReliabilityDisk, FeaturesOnAFullDiskNameTheBagAndLeaveNoPartOfIt) {
    const std::string slide = ips::test::test_slide_path();
    ASSERT_TRUE(fs::exists(slide)) << slide;
    TempDir dir("ips_reliability_bags");
    fs::create_directories(dir.path / "mnt");
    const std::string script = "mkdir $M/bags; dd if=/dev/zero of=$M/fill bs=4k >/dev/null 2>&1\n" + kBin +
                               " features " + kDir + "/tests/fixtures/features_tiny.yaml " + slide +
                               " --out $M/bags --device cpu --threads 1 > " + dir / "log" + " 2>&1; echo $? > " +
                               dir / "code\nls -A $M/bags > " + dir / "ls\n";
    const auto r = with_small_disk(script, dir.path / "mnt", "2m");
    ASSERT_EQ(r.code, 0) << "could not mount a small tmpfs: " << r.output;
    const std::string log = ips::test::file_text(dir.path / "log");
    EXPECT_EQ(ips::test::file_text(dir.path / "code"), "1\n") << log;
    EXPECT_TRUE(contains(log, "feature bag '" + dir / "mnt/bags/CMU-1-Small-Region.h5'")) << log;
    EXPECT_TRUE(contains(log, "No space left on device")) << log;
    EXPECT_TRUE(contains(log, "1 of 1 slides failed")) << log;
    EXPECT_EQ(ips::test::file_text(dir.path / "ls"), "");  // no bag, no temporary
}

// Feature bags in a CSV, one of them all NaN: its batch's loss is NaN.
void bags_with_a_nan_write(const TempDir& dir) {
    torch::manual_seed(3);
    std::ofstream train(dir.path / "train.csv"), test(dir.path / "test.csv");
    train << "path,metastases\n";
    test << "path,metastases\n";
    for (int k = 0; k < 12; ++k) {
        ips::FeatureBag bag;
        bag.features = torch::randn({10 + k, 32}) + (k % 2 ? 0.7 : 0.0);
        if (k == 5) bag.features.fill_(std::nanf(""));  // a damaged extraction
        const std::string name = "bag" + std::to_string(k) + ".h5";
        ips::feature_bag_write(dir / name, bag);
        (k < 8 ? train : test) << name << "," << (k % 2) << "\n";
    }
}

TEST(ReliabilityNaN, ANonFiniteLossStopsNamingStepImagesAndCheckpointOrIsSkipped) {
    TempDir dir("ips_reliability_nan");
    bags_with_a_nan_write(dir);
    const std::string args = "train " + kDir + "/tests/fixtures/bags_tiny.yaml --device cpu --threads 1 --quiet " +
                             "--set shuffle=false --set B=2 --set n_epoch=2 --set data_dir=" + dir.path.string();
    const auto stopped = ips_run(args + " --out " + dir / "stop");
    EXPECT_EQ(stopped.code, 1) << stopped.output;
    EXPECT_TRUE(contains(stopped.output, "training loss is nan at step")) << stopped.output;
    EXPECT_TRUE(contains(stopped.output, "bag5.h5")) << stopped.output;
    EXPECT_TRUE(contains(stopped.output, "in epoch 1; nothing of this batch was applied; no checkpoint was written yet"))
        << stopped.output;
    EXPECT_TRUE(contains(stopped.output, "nonfinite_loss: skip")) << stopped.output;
    // In epoch 2 (epoch 1 skipped its NaN batch), the checkpoint to go back to is named.
    ASSERT_EQ(ips_run(args + " --set nonfinite_loss=skip --stop-after 1 --out " + dir / "mixed").code, 0);
    const auto later = ips_run(args + " --resume --out " + dir / "mixed");
    EXPECT_EQ(later.code, 1) << later.output;
    EXPECT_TRUE(contains(later.output, "in epoch 2; nothing of this batch was applied; the last good checkpoint is " +
                                           dir / "mixed/last.pt (epoch 1)"))
        << later.output;

    const auto skipped = ips_run(args + " --set nonfinite_loss=skip --out " + dir / "skip");
    ASSERT_EQ(skipped.code, 0) << skipped.output;
    EXPECT_TRUE(contains(skipped.output, "non-finite training loss at step")) << skipped.output;
    const auto lines = lines_of(dir.path / "skip/metrics.jsonl");
    ASSERT_EQ(lines.size(), 2u);
    for (const auto& line : lines) {
        const auto j = nlohmann::json::parse(line);
        EXPECT_EQ(j["skipped_batches"], 1) << line;  // bag5's batch, once an epoch
        EXPECT_TRUE(j["train_loss"].is_number()) << line;
    }
    // The weights stayed finite: the skipped batch changed nothing.
    for (const auto& [name, t] : ips::torch_file_read(dir / "skip/last.pt", "model")) {
        if (t.is_floating_point()) {
            EXPECT_TRUE(torch::isfinite(t).all().item<bool>()) << name;
        }
    }
}

}  // namespace
