// `ips features` as a library call: configs it refuses (named by key), and the bag of the real
// Aperio slide through a tiny trunk: its tiles are tile_grid_make's, its rows the trunk's
// embeddings of those tiles, a second call finds it done, and a bag cut short or made with
// other settings is not taken as done.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include "test_support.h"
#include "ips/feature_bag.h"
#include "ips/features.h"
#include "ips/slide.h"
#include "ips/slide_source.h"
#include "ips/tissue.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::TempDir;

namespace {

// A narrow 2-stage ResNet-18 trunk (32-d) on 256 x 256 tissue tiles: the fixture `ips features`
// is tested with end to end (tests/cli/slides_test.cpp).
Config tiny_config() { return config_load(std::string(IPS_SOURCE_DIR) + "/tests/fixtures/features_tiny.yaml"); }

std::string svs_path() { return ips::test::test_slide_path(); }

}  // namespace

TEST(Features, ConfigCheckNamesTheKey) {
    const Config good = tiny_config();
    EXPECT_NO_THROW(features_config_check(good));
    struct Case {
        std::function<void(Config&)> spoil;
        std::string key;
    };
    const std::vector<Case> cases = {
        {[](Config& c) { c.model.is_image = false; }, "config key 'is_image'"},
        {[](Config& c) { c.model.n_chan_in = 1; }, "config key 'n_chan_in': slide tiles are RGB"},
        {[](Config& c) { c.model.pretrained = true; }, "config key 'encoder_weights'"},
    };
    for (const auto& c : cases) {
        Config cfg = good;
        c.spoil(cfg);
        const std::string e = error_of([&] { features_config_check(cfg); });
        EXPECT_NE(e.find(c.key), std::string::npos) << e;
        EXPECT_THROW(features_config_check(cfg), ConfigError);
    }
    // Pretrained with a weights file named is fine (the file is read when the net is made).
    Config with_weights = good;
    with_weights.model.pretrained = true;
    with_weights.model.encoder_weights = "/some/resnet18.pth";
    EXPECT_NO_THROW(features_config_check(with_weights));
}

TEST(Features, ExtractWritesTheBagOfTheSlideOnce) {
    ASSERT_TRUE(fs::exists(svs_path())) << "the Aperio test slide is missing: " << svs_path();
    const Config cfg = tiny_config();
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    net->eval();
    TempDir out("ips_features_unit");
    FeaturesOptions opt;
    EXPECT_EQ(opt.dtype, torch::kHalf);  // the default on disk
    opt.dtype = torch::kFloat32;
    opt.batch = 16;
    opt.progress = false;
    const FeaturesResult r = features_extract(net, cfg, torch::kCPU, svs_path(), out.path.string(), opt);
    EXPECT_FALSE(r.already_done);
    EXPECT_EQ(fs::path(r.out), out.path / "CMU-1-Small-Region.h5");
    EXPECT_EQ(r.dim, 32);

    // The tiles are those tile_grid_make gives for the config (tissue tiles of level 0).
    auto slide = slide_open(svs_path());
    const TileGrid grid = tile_grid_make(*slide, cfg.data);
    EXPECT_EQ(r.n_tiles, grid.coords.size(0));
    EXPECT_LT(r.n_tiles, 88);
    const FeatureBag bag = feature_bag_read(r.out);
    EXPECT_TRUE(torch::equal(bag.coords, grid.coords));
    EXPECT_EQ(bag.patch_size, 256);
    EXPECT_EQ(bag.patch_level, 0);
    EXPECT_EQ(bag.features.scalar_type(), torch::kFloat32);
    ASSERT_EQ(bag.features.sizes(), (std::vector<int64_t>{r.n_tiles, 32}));
    // Each row is the trunk's embedding of its tile, batches or not.
    auto source = slide_source_make(slide, grid, 3, normalization_of(cfg.data.normalize));
    const auto rows = torch::tensor({int64_t{0}, int64_t{15}, int64_t{16}, r.n_tiles - 1}, torch::kLong);
    torch::NoGradGuard no_grad;
    const auto want = net->embed(source->read(rows));
    EXPECT_TRUE(torch::allclose(bag.features.index_select(0, rows), want, 1e-4, 1e-5));
    EXPECT_GT(bag.features.std().item<float>(), 0);

    // A second call finds the bag and leaves it alone.
    const auto written = fs::last_write_time(r.out);
    const FeaturesResult again = features_extract(net, cfg, torch::kCPU, svs_path(), out.path.string(), opt);
    EXPECT_TRUE(again.already_done);
    EXPECT_EQ(again.out, r.out);
    EXPECT_EQ(fs::last_write_time(r.out), written);
    EXPECT_EQ(std::distance(fs::directory_iterator(out.path), fs::directory_iterator()), 1);  // no temporary
    EXPECT_EQ(features_check(cfg, svs_path(), out.path.string(), opt).state, OutputCheck::complete);

    // A bag of other settings or cut short is not done: each is named, and a cut one is made again.
    FeaturesOptions half = opt;
    half.dtype = torch::kHalf;
    OutputCheck c = features_check(cfg, svs_path(), out.path.string(), half);
    EXPECT_EQ(c.state, OutputCheck::incomplete);
    EXPECT_NE(c.why.find("holds float32, not float16"), std::string::npos) << c.why;
    Config coarser = cfg;
    coarser.data.patch_size = {512, 512};
    coarser.data.patch_stride = {512, 512};
    c = features_check(coarser, svs_path(), out.path.string(), opt);
    EXPECT_EQ(c.state, OutputCheck::incomplete);
    EXPECT_NE(c.why.find("rows; the slide has"), std::string::npos) << c.why;
    EXPECT_EQ(features_check(cfg, svs_path(), (out / "elsewhere"), opt).state, OutputCheck::absent);

    fs::resize_file(r.out, fs::file_size(r.out) / 2);
    c = features_check(cfg, svs_path(), out.path.string(), opt);
    EXPECT_EQ(c.state, OutputCheck::incomplete);
    EXPECT_NE(c.why.find(r.out), std::string::npos) << c.why;
    const FeaturesResult redone = features_extract(net, cfg, torch::kCPU, svs_path(), out.path.string(), opt);
    EXPECT_FALSE(redone.already_done);
    EXPECT_EQ(redone.redone_why, c.why);
    const FeatureBag remade = feature_bag_read(r.out);
    EXPECT_TRUE(torch::equal(remade.features, bag.features));
    EXPECT_TRUE(torch::equal(remade.coords, bag.coords));
}

TEST(Features, AnUnreadableSlideIsNamedAndLeavesNoBag) {
    const Config cfg = tiny_config();
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    net->eval();
    TempDir out("ips_features_unit_bad");
    std::ofstream(out / "broken.svs") << "not a slide";
    FeaturesOptions opt;
    opt.progress = false;
    const std::string e = error_of([&] { features_extract(net, cfg, torch::kCPU, out / "broken.svs", out.path.string(), opt); });
    EXPECT_NE(e.find("broken.svs"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(out / "broken.h5"));
}
