// Every patch's score on a whole slide and the files drawn from it, on a generated pyramid with a
// known needle and a model pointed at it (needle.h): the needle's tiles rank first and are the
// kept ones, kept scores are the aggregator's attention, the GeoJSON holds every tile at its
// level-0 position under a strict schema (checked here and by jsonschema and GDAL as peers), and
// the overlay TIFF opens in OpenSlide (python3-openslide) with the slide's size, red on the needle.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>

#include <unistd.h>

#include "needle.h"
#include "test_support.h"
#include "ips/explain.h"
#include "ips/feature_bag.h"
#include "ips/files.h"
#include "ips/input_open.h"
#include "ips/image_io.h"
#include "ips/predict.h"
#include "ips/select.h"

namespace fs = std::filesystem;
using namespace ips;
using test::TempDir;

namespace {

struct Scene {
    TempDir dir{"ips_explain"};
    test::NeedleScene needle;
    std::string slide = dir / "needle.tif";
    Config cfg = config_load(test::kSlideTinyYaml);
    IPSNet net{nullptr};
    Scene() {
        needle.write(slide);
        net = net_make(cfg.model, cfg.compute, cfg.seed);
        EXPECT_GT(test::needle_net_point(net, cfg, slide, needle), 0.0);
    }
};

// A strict reading of one patch feature: exactly these members, a closed 5-point ring.
void feature_expect_strict(const nlohmann::json& f, int64_t N) {
    ASSERT_TRUE(f.is_object());
    EXPECT_EQ(f.size(), 3u) << f.dump();
    EXPECT_EQ(f.at("type"), "Feature");
    const auto& g = f.at("geometry");
    EXPECT_EQ(g.size(), 2u);
    EXPECT_EQ(g.at("type"), "Polygon");
    ASSERT_EQ(g.at("coordinates").size(), 1u);
    const auto& ring = g.at("coordinates")[0];
    ASSERT_EQ(ring.size(), 5u);
    EXPECT_EQ(ring[0], ring[4]);
    for (const auto& p : ring) ASSERT_TRUE(p.is_array() && p.size() == 2 && p[0].is_number() && p[1].is_number());
    const auto& pr = f.at("properties");
    const std::set<std::string> keys = {"objectType", "name", "score", "rank", "kept", "index", "classification",
                                        "measurements"};
    std::set<std::string> got;
    for (const auto& [k, v] : pr.items()) got.insert(k);
    EXPECT_EQ(got, keys);
    EXPECT_EQ(pr.at("objectType"), "detection");
    EXPECT_TRUE(pr.at("score").is_number() && pr.at("score").get<double>() >= 0);
    EXPECT_TRUE(pr.at("rank").is_number_integer());
    EXPECT_GE(pr.at("rank").get<int64_t>(), 1);
    EXPECT_LE(pr.at("rank").get<int64_t>(), N);
    EXPECT_TRUE(pr.at("kept").is_boolean());
    EXPECT_TRUE(pr.at("classification").at("name").is_string());
    EXPECT_EQ(pr.at("classification").at("color").size(), 3u);
    EXPECT_EQ(pr.at("measurements").at("ips score"), pr.at("score"));
}

}  // namespace

TEST(PatchScores, KeptScoresAreTheAggregatorsAttentionAndComparableAcrossChunks) {
    // Logits of the whole image, four patches kept: the kept get exactly their attention, and
    // every other patch the same formula with the kept patches' normaliser.
    const auto logits = torch::randn({10, 2, 1}, torch::kFloat32);
    const auto kept = torch::tensor({3, 7, 1, 0}, torch::kLong);
    const auto attn = torch::softmax(logits.index_select(0, kept), 0).mean(-1).mean(-1);  // [4]
    const auto s = patch_scores(logits, 10, kept, attn);
    ASSERT_EQ(s.numel(), 10);
    EXPECT_TRUE(torch::allclose(s.index_select(0, kept), attn.to(torch::kFloat32)));
    EXPECT_NEAR(s.index_select(0, kept).sum().item<double>(), 1.0, 1e-6);
    const auto log_z = torch::logsumexp(logits.index_select(0, kept).to(torch::kFloat64), 0);
    for (int64_t n : {2, 4, 5, 6, 8, 9}) {
        const double want = (logits[n].to(torch::kFloat64) - log_z).exp().mean().item<double>();
        EXPECT_NEAR(s[n].item<double>(), want, 1e-6 * std::max(1.0, want)) << n;
    }
    // Nothing selected (every patch kept): scores are the attention, with no logits at all.
    const auto all = patch_scores(torch::Tensor(), 3, torch::tensor({2, 0, 1}, torch::kLong),
                                  torch::tensor({0.5f, 0.3f, 0.2f}));
    EXPECT_TRUE(torch::equal(all, torch::tensor({0.3f, 0.2f, 0.5f})));
}

TEST(PredictSlide, TheNeedleRanksFirstAndEveryOutputAgrees) {
    Scene s;
    PredictOptions opt;
    opt.explain_dir = s.dir / "out";
    explain_outputs_parse("heatmap,geojson,gallery,overlay", opt.explain);
    const Prediction p = predict_input(s.net, s.cfg, torch::kCPU, s.slide, opt);
    ASSERT_EQ(p.N, s.needle.N());
    const auto needle = s.needle.needle_tiles();
    const std::set<int64_t> needle_set(needle.begin(), needle.end());
    // The M = 4 kept patches are the needle's four tiles, and they rank 1..4 of all patches.
    EXPECT_EQ(std::set<int64_t>(p.selected.begin(), p.selected.end()), needle_set);
    for (int64_t r = 0; r < 4; ++r) EXPECT_TRUE(needle_set.count(p.patches.order[r].item<int64_t>())) << r;
    // Kept scores are the aggregator's attention, in its order; others come after them here.
    for (size_t k = 0; k < p.selected.size(); ++k) {
        EXPECT_FLOAT_EQ(p.patches.scores[p.selected[k]].item<float>(), float(p.scores[k]));
        EXPECT_EQ(p.patches.order[int64_t(k)].item<int64_t>(), p.selected[k]);
        EXPECT_TRUE(p.patches.kept[p.selected[k]].item<bool>());
    }
    EXPECT_EQ(p.patches.kept.sum().item<int64_t>(), 4);
    EXPECT_EQ(p.times.patches, s.needle.N());
    EXPECT_GT(p.times.encode, 0.0);
    EXPECT_LE(p.times.encode, p.times.select + 1e-3);

    // GeoJSON: one strict feature per tile, at the tile's level-0 position, ranks a permutation.
    const fs::path out = opt.explain_dir;
    const auto geo = nlohmann::json::parse(file_read(out / "patches.geojson"));
    EXPECT_EQ(geo.size(), 2u);
    EXPECT_EQ(geo.at("type"), "FeatureCollection");
    const auto& features = geo.at("features");
    ASSERT_EQ(int64_t(features.size()), s.needle.N());
    std::set<int64_t> ranks;
    for (int64_t n = 0; n < s.needle.N(); ++n) {
        const auto& f = features[size_t(n)];
        feature_expect_strict(f, s.needle.N());
        const int64_t x = (n % s.needle.cols()) * 128, y = (n / s.needle.cols()) * 128;
        const auto& ring = f["geometry"]["coordinates"][0];
        EXPECT_EQ(ring[0], nlohmann::json::array({x, y})) << n;
        EXPECT_EQ(ring[2], nlohmann::json::array({x + 128, y + 128})) << n;
        EXPECT_EQ(f["properties"]["index"], n);
        EXPECT_EQ(f["properties"]["kept"].get<bool>(), needle_set.count(n) == 1) << n;
        EXPECT_FLOAT_EQ(f["properties"]["score"].get<float>(), p.patches.scores[n].item<float>());
        ranks.insert(f["properties"]["rank"].get<int64_t>());
    }
    EXPECT_EQ(int64_t(ranks.size()), s.needle.N());

    // The peers: the schema in tests/fixtures by python3-jsonschema, and GDAL's GeoJSON reader
    // (ogr2ogr) writing the collection back out with the same polygons and properties.
    const std::string peer = std::string(IPS_SOURCE_DIR) + "/tests/peer/explain_peer.py";
    auto r = test::command_run("/usr/bin/python3 " + peer + " geojson " + (out / "patches.geojson").string() + " " +
                               std::string(IPS_SOURCE_DIR) + "/tests/fixtures/patches.schema.json " + (s.dir / "roundtrip"));
    EXPECT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("schema ok, " + std::to_string(s.needle.N()) + " features"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("round trip ok"), std::string::npos) << r.output;

    // The overlay opens in OpenSlide with the slide's size; red over the needle, blue elsewhere.
    r = test::command_run("/usr/bin/python3 " + peer + " overlay " + (out / "overlay.tif").string() + " 1100 600 100 100");
    ASSERT_EQ(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("dimensions 2048 1536"), std::string::npos) << r.output;
    int R = 0, G = 0, B = 0, A = 0, r2 = 0, g2 = 0, b2 = 0, a2 = 0;
    ASSERT_EQ(std::sscanf(r.output.c_str() + r.output.find("at-point"), "at-point %d %d %d %d far %d %d %d %d", &R, &G,
                          &B, &A, &r2, &g2, &b2, &a2),
              8)
        << r.output;
    EXPECT_GT(R, 100);  // the top of the scale: dark red
    EXPECT_LT(G, 30);
    EXPECT_LT(B, 30);
    EXPECT_EQ(A, 255);
    EXPECT_GT(b2, r2);  // the low end

    // Heat map: the thumbnail plus a legend; red over the needle, kept outlined in black.
    const auto heat = image_read(out / "heatmap.png", 3);
    EXPECT_GT(heat.size(2), 2048 / 2);  // thumbnail side 2048 takes level 0 here, plus the legend
    const auto at = heat.index({torch::indexing::Slice(), 600, 1100}).to(torch::kInt);
    EXPECT_GT(at[0].item<int>(), at[2].item<int>() + 60) << at;
    EXPECT_EQ(heat.index({torch::indexing::Slice(), 512, 1024}).sum().item<int>(), 0);  // the outline's corner
    const auto gallery = image_read(out / "gallery.png", 3);
    EXPECT_GT(gallery.size(1), 160);
    EXPECT_FALSE(fs::exists(out / "viewer"));  // not asked for
}

TEST(PredictSlide, FeatureBagsPredictWithScoresAndGeoJsonButNoPixels) {
    TempDir dir("ips_explain_bag");
    Config cfg = config_load(std::string(IPS_SOURCE_DIR) + "/tests/fixtures/bags_tiny.yaml");
    const std::string bag = dir / "slide.h5";
    FeatureBag b;
    b.features = torch::randn({30, cfg.model.n_chan_in});
    b.coords = torch::stack({torch::arange(30, torch::kLong).remainder(6) * 512, torch::arange(30, torch::kLong).div(6, "floor") * 512}, 1);
    b.patch_size = 256;
    b.patch_level = 1;
    feature_bag_write(bag, b);
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    PredictOptions opt;
    opt.explain_dir = dir / "out";
    explain_outputs_parse("all", opt.explain);
    const Prediction p = predict_input(net, cfg, torch::kCPU, bag, opt);
    EXPECT_EQ(p.N, 30);
    EXPECT_EQ(explain_files(opt.explain, false, true), (std::vector<std::string>{"heatmap.png", "patches.geojson"}));
    const auto geo = nlohmann::json::parse(file_read(fs::path(dir / "out") / "patches.geojson"));
    ASSERT_EQ(geo["features"].size(), 30u);
    // The bag's tiles are 512 level-0 pixels apart: that is their side.
    EXPECT_EQ(geo["features"][7]["geometry"]["coordinates"][0][0], nlohmann::json::array({512, 512}));
    EXPECT_EQ(geo["features"][7]["geometry"]["coordinates"][0][2], nlohmann::json::array({1024, 1024}));
    EXPECT_TRUE(fs::exists(fs::path(dir / "out") / "heatmap.png"));
    EXPECT_FALSE(fs::exists(fs::path(dir / "out") / "overlay.tif"));
}

TEST(PredictSlide, OutputsListIsParsedStrictly) {
    ExplainOptions o;
    explain_outputs_parse("geojson,gallery", o);
    EXPECT_TRUE(o.geojson && o.gallery && !o.heatmap && !o.overlay && !o.viewer);
    explain_outputs_parse("none", o);
    EXPECT_TRUE(!o.geojson && !o.gallery && !o.heatmap && !o.overlay && !o.viewer);
    EXPECT_NE(test::error_of([&] { explain_outputs_parse("heatmap,thumbs", o); }).find("'thumbs'"), std::string::npos);
}

TEST(PredictSlide, AFailedOutputLeavesNoFolderAndStaleTemporariesAreCleared) {
    Scene s;
    PredictOptions opt;
    opt.explain_dir = (fs::path(s.dir / "out") / "needle").string();
    explain_outputs_parse("heatmap,viewer", opt.explain);
    // The viewer fails (no OpenSeadragon there) after the heat map: nothing of the input stays.
    setenv("IPS_OPENSEADRAGON_DIR", (s.dir / "nowhere").c_str(), 1);
    const std::string e = test::error_of([&] { predict_input(s.net, s.cfg, torch::kCPU, s.slide, opt); });
    unsetenv("IPS_OPENSEADRAGON_DIR");
    EXPECT_NE(e.find("OpenSeadragon"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(opt.explain_dir));
    std::error_code ec;
    for (const auto& f : fs::directory_iterator(s.dir / "out", ec)) ADD_FAILURE() << "left behind: " << f.path();
    // A killed writer's folder (a pid that is gone) is cleared; a live one's is not.
    fs::create_directories(fs::path(s.dir / "out") / "needle.tmp.999999999" / "viewer");
    fs::create_directories(fs::path(s.dir / "out") / ("other.tmp." + std::to_string(::getpid())));
    EXPECT_EQ(stale_temporaries_remove(s.dir / "out"), 1);
    EXPECT_FALSE(fs::exists(fs::path(s.dir / "out") / "needle.tmp.999999999"));
    EXPECT_TRUE(fs::exists(fs::path(s.dir / "out") / ("other.tmp." + std::to_string(::getpid()))));
}

TEST(PredictSlide, InputsFromFoldersAndCsvsAndTheirOutputNames) {
    TempDir dir("ips_predict_inputs");
    std::ofstream(dir / "list.csv") << "# cohort\nPath,label\n\"a \"\"b\"\", c.svs\",1\n/abs/x.tif,0\nbags/y.h5#slide_1\n";
    EXPECT_EQ(predict_inputs_list({}, dir / "list.csv"),
              (std::vector<std::string>{dir / "a \"b\", c.svs", "/abs/x.tif", dir / "bags/y.h5#slide_1"}));
    EXPECT_NE(test::error_of([&] { predict_inputs_list({}, dir / "none.csv"); }).find("none.csv"), std::string::npos);
    EXPECT_NE(test::error_of([&] { predict_inputs_list({}, ""); }).find("no inputs"), std::string::npos);
    // The groups of one bag file get outputs of their own.
    EXPECT_EQ(input_stem("bags/y.h5#slide_1"), "y_slide_1");
    EXPECT_EQ(input_stem("slides/z.svs"), "z");
    EXPECT_EQ(prediction_record_path("out", "bags/y.h5#slide_2"), "out/y_slide_2.json");
    EXPECT_NO_THROW(inputs_stems_distinct({"bags/y.h5#slide_1", "bags/y.h5#slide_2"}));
    EXPECT_THROW(inputs_stems_distinct({"a/z.svs", "b/z.tif"}), std::runtime_error);
}
