// Prediction for one image file: probabilities per task, the selected patches best first with
// their attention, the heat map drawn from them, the JSON the CLI prints, heat map names, and the
// records of --out that a rerun keeps when complete.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <numeric>
#include <set>

#include "test_support.h"
#include "ips/files.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"
#include "ips/predict.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::TempDir;

namespace {

const std::string kTinyImageYaml = std::string(IPS_SOURCE_DIR) + "/tests/fixtures/tiny_grey.yaml";


// A 64 x 80 grey PNG: dark with a bright square, so the patches differ.
std::string image_write(const TempDir& dir) {
    auto img = torch::full({1, 64, 80}, 20, torch::kUInt8);
    img.index_put_({0, torch::indexing::Slice(16, 40), torch::indexing::Slice(40, 70)}, 230);
    img.index_put_({0, torch::indexing::Slice(0, 64, 7)}, 120);  // stripes
    const std::string path = dir / "slide_01.png";
    png_write(path, img);
    return path;
}

PredictOptions heat_only(const std::string& heatmap) {
    PredictOptions o;
    o.heatmap = heatmap;
    return o;
}

}  // namespace

TEST(Predict, ProbabilitiesSelectionAndHeatmap) {
    const Config cfg = config_load(kTinyImageYaml);
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    TempDir dir("ips_predict_unit");
    const std::string png = image_write(dir);
    const std::string heat = dir / "heat.png";
    const Prediction p = predict_input(net, cfg, torch::kCPU, png, heat_only(heat));
    EXPECT_EQ(p.input, png);
    EXPECT_EQ(p.N, 4 * 5);  // the image's grid
    EXPECT_EQ(p.task_names, (std::vector<std::string>{"kind", "tags"}));
    ASSERT_EQ(p.probs.size(), 2u);
    ASSERT_EQ(p.probs[0].size(), 3u);
    ASSERT_EQ(p.probs[1].size(), 3u);
    EXPECT_NEAR(std::accumulate(p.probs[0].begin(), p.probs[0].end(), 0.0), 1.0, 1e-6);  // softmax
    for (double v : p.probs[1]) {  // sigmoid: each in (0, 1) on its own
        EXPECT_GT(v, 0.0);
        EXPECT_LT(v, 1.0);
    }
    // M distinct patches of the grid, most attended first; attention over them sums to one.
    ASSERT_EQ(p.selected.size(), 4u);
    ASSERT_EQ(p.scores.size(), 4u);
    EXPECT_EQ(std::set<int64_t>(p.selected.begin(), p.selected.end()).size(), 4u);
    for (int64_t n : p.selected) {
        EXPECT_GE(n, 0);
        EXPECT_LT(n, 20);
    }
    EXPECT_TRUE(std::is_sorted(p.scores.rbegin(), p.scores.rend()));
    EXPECT_NEAR(std::accumulate(p.scores.begin(), p.scores.end(), 0.0), 1.0, 1e-5);

    // Every patch has a score; the kept ones have their attention and rank first.
    ASSERT_EQ(p.patches.scores.numel(), 20);
    for (size_t k = 0; k < p.selected.size(); ++k) {
        EXPECT_FLOAT_EQ(p.patches.scores[p.selected[k]].item<float>(), float(p.scores[k]));
        EXPECT_TRUE(p.patches.kept[p.selected[k]].item<bool>());
    }

    // The heat map is the image with every patch painted by its score, the kept outlined, and a legend.
    EXPECT_EQ(p.heatmap, heat);
    std::vector<ScoredBox> kept;
    const double top = p.patches.scores.max().item<double>();
    for (int64_t n : p.selected) kept.push_back({double(n % 5) * 16, double(n / 5) * 16, 16, 16, 0, true});
    const auto cells = p.patches.scores.view({4, 5});  // the 64 x 80 image's grid of 16 x 16 patches
    const auto drawn = image_read(heat, 3);
    EXPECT_EQ(drawn.sizes(), (std::vector<int64_t>{3, 240, 80 + 130}));
    EXPECT_TRUE(torch::equal(drawn, heatmap_thumbnail_render(image_read(png, 3), cells, 16, 16, kept, top, "patch score")));

    // The same input, the same prediction; no heat map unless asked.
    const Prediction again = predict_input(net, cfg, torch::kCPU, png);
    EXPECT_EQ(again.selected, p.selected);
    EXPECT_EQ(again.probs, p.probs);
    EXPECT_TRUE(again.heatmap.empty());
}

TEST(Predict, JsonHasTheKeysTheCliPrints) {
    Prediction p;
    p.input = "a/b.png";
    p.N = 20;
    p.task_names = {"kind", "tags"};
    p.probs = {{0.2, 0.3, 0.5}, {0.9, 0.1, 0.4}};
    p.selected = {7, 2};
    p.scores = {0.75, 0.25};
    auto j = prediction_to_json(p);
    EXPECT_EQ(j["image"].get<std::string>(), "a/b.png");
    EXPECT_EQ(j["N"].get<int64_t>(), 20);
    EXPECT_EQ(j["predictions"]["kind"].get<std::vector<double>>(), p.probs[0]);
    EXPECT_EQ(j["predictions"]["tags"].get<std::vector<double>>(), p.probs[1]);
    EXPECT_EQ(j["selected"].get<std::vector<int64_t>>(), p.selected);
    EXPECT_EQ(j["scores"].get<std::vector<double>>(), p.scores);
    EXPECT_FALSE(j.contains("heatmap"));
    EXPECT_EQ(j.size(), 5u);
    p.heatmap = "heat.png";
    j = prediction_to_json(p);
    EXPECT_EQ(j["heatmap"].get<std::string>(), "heat.png");
}

TEST(Predict, HeatmapPathForOneOrSeveralImages) {
    EXPECT_EQ(heatmap_path_for("out/heat.png", "data/test/00001.png", 1), "out/heat.png");
    EXPECT_EQ(heatmap_path_for("out/heat.png", "data/test/00001.png", 2), "out/heat_00001.png");
    EXPECT_EQ(heatmap_path_for("heat.png", "/abs/slide.tif", 3), "heat_slide.png");
    EXPECT_EQ(heatmap_path_for("out/attention", "x/img.jpg", 2), "out/attention_img");
}

TEST(Predict, UnreadableImagesAndFeatureConfigsAreRefused) {
    Config cfg = config_load(kTinyImageYaml);
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    TempDir dir("ips_predict_unit_bad");
    const std::string missing = dir / "missing.png";
    std::string e = error_of([&] { predict_input(net, cfg, torch::kCPU, missing); });
    EXPECT_NE(e.find(missing), std::string::npos) << e;
    std::ofstream(dir / "broken.png") << "not a png";
    e = error_of([&] { predict_input(net, cfg, torch::kCPU, dir / "broken.png", heat_only(dir / "heat.png")); });
    EXPECT_NE(e.find("broken.png"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(dir / "heat.png"));
    cfg.model.is_image = false;
    e = error_of([&] { predict_input(net, cfg, torch::kCPU, image_write(dir)); });
    EXPECT_NE(e.find("config key 'is_image'"), std::string::npos) << e;
}

TEST(Predict, RecordsAreKeptWhenCompleteAndMadeAgainWhenNot) {
    const Config cfg = config_load(kTinyImageYaml);
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    TempDir dir("ips_predict_unit_records");
    const std::string png = image_write(dir), out = dir / "out", heat = dir / "heat.png";
    fs::create_directories(out);
    const std::string record = prediction_record_path(out, png);
    EXPECT_EQ(fs::path(record), fs::path(out) / "slide_01.json");
    EXPECT_EQ(prediction_record_check(record, png, cfg, heat).state, OutputCheck::absent);

    // The record is the JSON line --json prints, heat map included.
    const PredictionRecord r = predict_recorded(net, cfg, torch::kCPU, png, out, heat_only(heat));
    EXPECT_FALSE(r.already_done);
    EXPECT_EQ(r.path, record);
    const std::string line = prediction_to_json(predict_input(net, cfg, torch::kCPU, png, heat_only(heat))).dump() + "\n";
    EXPECT_EQ(file_read(record), line);
    EXPECT_EQ(r.json.dump() + "\n", line);
    const std::string heat_bytes = file_read(heat);

    // Complete: read back, not predicted again.
    const auto written = fs::last_write_time(record);
    const PredictionRecord again = predict_recorded(net, cfg, torch::kCPU, png, out, heat_only(heat));
    EXPECT_TRUE(again.already_done);
    EXPECT_EQ(again.json, r.json);
    EXPECT_EQ(fs::last_write_time(record), written);

    // Incomplete, each named; a cut record or heat map is made again, the same as before.
    const auto check_why = [&](const std::string& want_heat) {
        const OutputCheck c = prediction_record_check(record, png, cfg, want_heat);
        EXPECT_EQ(c.state, OutputCheck::incomplete);
        return c.why;
    };
    EXPECT_NE(check_why("").find("heat map " + heat + ", not (none)"), std::string::npos) << check_why("");
    Config three_tasks = cfg;
    three_tasks.model.tasks.push_back({2, "extra", ActFn::softmax, Metric::accuracy});
    EXPECT_EQ(prediction_record_check(record, png, three_tasks, heat).state, OutputCheck::incomplete);
    EXPECT_EQ(prediction_record_check(record, dir / "other.png", cfg, heat).state, OutputCheck::incomplete);
    for (const std::string& cut : {record, heat}) {
        fs::resize_file(cut, fs::file_size(cut) - 5);
        const std::string why = check_why(heat);
        EXPECT_NE(why.find(record), std::string::npos) << why;
        const PredictionRecord redone = predict_recorded(net, cfg, torch::kCPU, png, out, heat_only(heat));
        EXPECT_FALSE(redone.already_done);
        EXPECT_EQ(redone.redone_why, why);
        EXPECT_EQ(file_read(record), line);
        EXPECT_EQ(file_read(heat), heat_bytes);
    }
}
