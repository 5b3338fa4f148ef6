// The ips binary end to end: exit codes, messages, files written, JSON printed.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <torch/version.h>

#include "test_support.h"

namespace fs = std::filesystem;

namespace {

const std::string kDir = IPS_SOURCE_DIR;

using ips::test::ips_run;
using ips::test::CommandResult;

std::string last_line(const std::string& s) {
    auto end = s.find_last_not_of('\n');
    auto start = s.rfind('\n', end);
    return s.substr(start == std::string::npos ? 0 : start + 1, end - (start == std::string::npos ? 0 : start + 1) + 1);
}

fs::path temp_dir(const std::string& name) {
    fs::path p = fs::temp_directory_path() / ("ips_cli_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(p);
    return p;
}

}  // namespace

TEST(Cli, BenchPrintsJson) {
    CommandResult r = ips_run("bench " + kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --threads 2 --iters 2 --warmup 1 --json");
    ASSERT_EQ(r.code, 0) << r.output;
    auto j = nlohmann::json::parse(last_line(r.output));
    for (const char* key : {"ms_per_batch", "img_per_s", "peak_mem_gib", "device", "mode", "B", "N", "M", "I"})
        EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_EQ(j["mode"], "train");
    EXPECT_EQ(j["N"], 16);
    EXPECT_GT(j["ms_per_batch"].get<double>(), 0);
    CommandResult e = ips_run("bench " + kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --mode eval --iters 1 --json");
    ASSERT_EQ(e.code, 0) << e.output;
    EXPECT_EQ(nlohmann::json::parse(last_line(e.output))["mode"], "eval");
}

TEST(Cli, VersionNamesIpsLibtorchAndDevices) {
    CommandResult r = ips_run("--version");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_EQ(r.output.rfind("ips ", 0), 0u) << r.output;
    EXPECT_NE(r.output.find(std::string("libtorch ") + TORCH_VERSION), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("devices: cpu"), std::string::npos) << r.output;
    // Every subcommand is in the table, in the order of its entries.
    CommandResult help = ips_run("--help");
    size_t last = 0;
    for (const char* cmd : {"data", "tiles", "features", "pretrain", "train", "eval", "predict", "plot", "bench", "bench-read"}) {
        const size_t at = help.output.find(std::string("  ") + cmd + " ");
        ASSERT_NE(at, std::string::npos) << cmd << "\n" << help.output;
        EXPECT_GT(at, last) << cmd;
        last = at;
    }
}

TEST(Cli, TrainWritesRunFolderAndEvalReproducesIt) {
    fs::path out = temp_dir("train");
    CommandResult t = ips_run("train " + kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --quiet --out " + out.string());
    ASSERT_EQ(t.code, 0) << t.output;
    EXPECT_NE(t.output.find("libtorch "), std::string::npos) << t.output;  // the run says what it runs on
    for (const char* f : {"config.yaml", "metrics.jsonl", "last.pt", "best.pt"}) EXPECT_TRUE(fs::exists(out / f)) << f;
    std::ifstream m(out / "metrics.jsonl");
    std::string line, last;
    int n = 0;
    while (std::getline(m, line)) last = line, ++n;
    EXPECT_EQ(n, 2);
    auto j = nlohmann::json::parse(last);
    EXPECT_TRUE(j["test"].contains("kind"));
    EXPECT_TRUE(j["test"]["tags"].contains("multilabel_accuracy"));

    // The resolved config is itself a valid config, and eval on last.pt gives the last test loss.
    CommandResult e = ips_run("eval " + (out / "config.yaml").string() + " --device cpu --checkpoint " + (out / "last.pt").string());
    ASSERT_EQ(e.code, 0) << e.output;
    char expected[64];
    std::snprintf(expected, sizeof expected, "test loss %f", j["test_loss"].get<double>());
    EXPECT_NE(e.output.find(expected), std::string::npos) << e.output << "\nexpected: " << expected;
    fs::remove_all(out);
}

TEST(Cli, BadInputsFailWithMessagesNamingTheProblem) {
    const std::string cfg = kDir + "/tests/fixtures/tiny_synthetic.yaml";
    CommandResult unknown = ips_run("bench " + cfg + " --set no_such_key=1");
    EXPECT_NE(unknown.code, 0);
    EXPECT_NE(unknown.output.find("'no_such_key'"), std::string::npos) << unknown.output;
    CommandResult bad_m = ips_run("train " + cfg + " --set M=0 --out " + temp_dir("bad").string());
    EXPECT_NE(bad_m.code, 0);
    EXPECT_NE(bad_m.output.find("'M'"), std::string::npos) << bad_m.output;
    CommandResult missing = ips_run("train /no/such/config.yaml");
    EXPECT_NE(missing.code, 0);
    EXPECT_NE(missing.output.find("/no/such/config.yaml"), std::string::npos) << missing.output;
    CommandResult ckpt = ips_run("eval " + cfg + " --checkpoint /no/such/model.pt");
    EXPECT_NE(ckpt.code, 0);
    EXPECT_NE(ckpt.output.find("/no/such/model.pt"), std::string::npos) << ckpt.output;
    // --resume before the first checkpoint exists (a scheduler restarting a job that died early)
    // starts from the beginning and says so.
    const fs::path fresh = temp_dir("noresume");
    CommandResult resume = ips_run("train " + cfg + " --resume --quiet --out " + fresh.string());
    EXPECT_EQ(resume.code, 0) << resume.output;
    EXPECT_NE(resume.output.find("last.pt does not exist yet; starting from the beginning"), std::string::npos)
        << resume.output;
    EXPECT_TRUE(fs::exists(fresh / "last.pt"));
}

// Each --set takes one KEY=VALUE: the positional arguments after it stay positional, and a value
// without '=' (a path swallowed by mistake) is refused, on every subcommand that reads a config.
TEST(Cli, EachSetTakesOneKeyValueOnEverySubcommand) {
    const std::string cfg = kDir + "/tests/fixtures/tiny_synthetic.yaml";
    for (const char* sub : {"train", "eval", "predict", "pretrain", "features", "bench", "bench-comm"}) {
        CommandResult r = ips_run(std::string(sub) + " " + cfg + " --set M=2 --set images/a.png");
        EXPECT_NE(r.code, 0) << sub;
        EXPECT_NE(r.output.find("--set takes one KEY=VALUE, not 'images/a.png'"), std::string::npos) << sub << ": " << r.output;
    }
    // predict checks its inputs before it opens the weights: "no inputs given" would mean --set took the image.
    const std::string image = kDir + "/tests/fixtures/no_such_image.png";
    CommandResult none = ips_run("predict " + cfg + " --set M=2 --weights /no/such/w.pt");
    EXPECT_NE(none.output.find("no inputs given"), std::string::npos) << none.output;
    CommandResult one = ips_run("predict " + cfg + " --set M=2 " + image + " --weights /no/such/w.pt");
    EXPECT_NE(one.code, 0);
    EXPECT_EQ(one.output.find("no inputs given"), std::string::npos) << one.output;
    EXPECT_NE(one.output.find("/no/such/w.pt"), std::string::npos) << one.output;
    // features: the slide after --set is the slide it tries to open.
    const std::string demo = kDir + "/configs/demo_megapixel_mnist.yaml";
    CommandResult feat = ips_run("features " + demo + " --set n_chan_in=3 --set encoder_weights= /no/such/slide.svs --out " +
                                 temp_dir("set_features").string());
    EXPECT_NE(feat.code, 0);
    EXPECT_EQ(feat.output.find("slides is required"), std::string::npos) << feat.output;
    EXPECT_NE(feat.output.find("/no/such/slide.svs"), std::string::npos) << feat.output;
}
