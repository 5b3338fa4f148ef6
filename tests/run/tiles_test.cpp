// `ips tiles` on the real Aperio slide: the CSV of tissue tiles, the JSON of settings and counts,
// the thumbnail with the tiles outlined; a rerun keeps a complete result and redoes another.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>

#include "test_support.h"
#include "ips/files.h"
#include "ips/image_io.h"
#include "ips/slide.h"
#include "ips/tiles.h"
#include "ips/tissue.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::lines_of;
using test::TempDir;

namespace {

std::string svs_path() { return ips::test::test_slide_path(); }

}  // namespace

TEST(Tiles, WritesCsvJsonAndThumbnailOfTheTissueTiles) {
    ASSERT_TRUE(fs::exists(svs_path())) << "the Aperio test slide is missing: " << svs_path();
    TempDir out("ips_tiles_unit");
    TilesOptions opt;
    opt.thumb = 512;
    const TilesResult r = tiles_write(opt, out.path.string(), svs_path());
    EXPECT_EQ(fs::path(r.stem), out.path / "CMU-1-Small-Region");
    EXPECT_EQ(r.grid_tiles, 88);
    EXPECT_GT(r.tiles, 0);
    EXPECT_LE(r.tiles, r.grid_tiles);
    EXPECT_EQ(r.level, 0);

    // The CSV: a header, then one level-0 x,y per tile, as tile_grid_tissue gives them.
    const auto csv = lines_of(r.stem + ".csv");
    ASSERT_EQ(int64_t(csv.size()), r.tiles + 1);
    EXPECT_EQ(csv[0], "x,y");
    auto slide = slide_open(svs_path());
    const TissueMask tissue = tissue_mask_make(*slide, 512);
    EXPECT_EQ(r.threshold, tissue.threshold);
    const TileGrid grid = tile_grid_tissue(*slide, tissue, 0, 256, 256, 0.01);
    ASSERT_EQ(grid.coords.size(0), r.tiles);
    for (int64_t n = 0; n < r.tiles; ++n)
        EXPECT_EQ(csv[size_t(n + 1)], std::to_string(grid.coords[n][0].item<int64_t>()) + "," +
                                          std::to_string(grid.coords[n][1].item<int64_t>()));

    // The JSON: the slide's geometry and the settings that made the tiles.
    std::ifstream in(r.stem + ".json");
    const auto j = nlohmann::json::parse(in);
    EXPECT_EQ(j["slide"].get<std::string>(), svs_path());
    EXPECT_EQ(j["width"].get<int64_t>(), 2220);
    EXPECT_EQ(j["height"].get<int64_t>(), 2967);
    EXPECT_EQ(j["levels"].get<int64_t>(), 1);
    EXPECT_NEAR(j["mpp"].get<double>(), 0.499, 1e-3);
    EXPECT_EQ(j["level"].get<int>(), 0);
    EXPECT_DOUBLE_EQ(j["downsample"].get<double>(), 1.0);
    EXPECT_EQ(j["patch_size"].get<int64_t>(), 256);
    EXPECT_EQ(j["stride"].get<int64_t>(), 256);
    EXPECT_EQ(j["otsu_threshold"].get<int>(), r.threshold);
    EXPECT_DOUBLE_EQ(j["min_tissue"].get<double>(), 0.01);
    EXPECT_EQ(j["tiles"].get<int64_t>(), r.tiles);
    EXPECT_EQ(j["grid_tiles"].get<int64_t>(), 88);

    // The thumbnail the tissue was found on, with the overlay.
    ASSERT_TRUE(fs::exists(r.stem + ".png"));
    const auto png = image_read(r.stem + ".png", 3);
    EXPECT_EQ(png.sizes(), tissue.thumb.rgb.sizes());
    EXPECT_TRUE(torch::equal(png, tissue_overlay(*slide, tissue, grid)));
    // Three files, nothing temporary left.
    EXPECT_EQ(std::distance(fs::directory_iterator(out.path), fs::directory_iterator()), 3);
}

TEST(Tiles, StrideAndTissueSettingsAreUsedAndRecorded) {
    ASSERT_TRUE(fs::exists(svs_path())) << "the Aperio test slide is missing: " << svs_path();
    TempDir out("ips_tiles_unit_settings");
    TilesOptions opt;
    opt.thumb = 256;
    opt.stride = 128;
    opt.min_tissue = 0.5;
    const TilesResult r = tiles_write(opt, out.path.string(), svs_path());
    EXPECT_EQ(r.grid_tiles, ((2220 - 256) / 128 + 1) * ((2967 - 256) / 128 + 1));
    EXPECT_GT(r.tiles, 0);
    EXPECT_LT(r.tiles, r.grid_tiles);
    const auto csv = lines_of(r.stem + ".csv");
    ASSERT_EQ(int64_t(csv.size()), r.tiles + 1);
    EXPECT_EQ(csv[1].find(','), csv[1].rfind(','));
    std::ifstream in(r.stem + ".json");
    const auto j = nlohmann::json::parse(in);
    EXPECT_EQ(j["stride"].get<int64_t>(), 128);
    EXPECT_DOUBLE_EQ(j["min_tissue"].get<double>(), 0.5);
    EXPECT_EQ(j["grid_tiles"].get<int64_t>(), r.grid_tiles);
    // Every tile starts on the 128-pixel grid.
    for (size_t k = 1; k < csv.size(); ++k) {
        const int64_t x = std::stoll(csv[k].substr(0, csv[k].find(','))), y = std::stoll(csv[k].substr(csv[k].find(',') + 1));
        EXPECT_EQ(x % 128, 0) << csv[k];
        EXPECT_EQ(y % 128, 0) << csv[k];
    }
}

TEST(Tiles, ProblemsAreNamed) {
    ASSERT_TRUE(fs::exists(svs_path())) << "the Aperio test slide is missing: " << svs_path();
    TempDir out("ips_tiles_unit_bad");
    TilesOptions opt;
    opt.thumb = 256;
    opt.level = 1;
    std::string e = error_of([&] { tiles_write(opt, out.path.string(), svs_path()); });
    EXPECT_NE(e.find("has 1 level(s), not level 1"), std::string::npos) << e;
    opt.level = 0;
    // tiles_write makes its folder (once the slide is read); one under a file cannot be made.
    std::ofstream(out / "a_file") << "x";
    const std::string nowhere = out / "a_file/no_dir";
    e = error_of([&] { tiles_write(opt, nowhere, svs_path()); });
    EXPECT_NE(e.find(nowhere), std::string::npos) << e;
    std::ofstream(out / "broken.svs") << "garbage";
    e = error_of([&] { tiles_write(opt, out.path.string(), out / "broken.svs"); });
    EXPECT_NE(e.find("broken.svs"), std::string::npos) << e;
}

TEST(Tiles, ARerunKeepsACompleteResultAndRedoesAnIncompleteOne) {
    ASSERT_TRUE(fs::exists(svs_path())) << "the Aperio test slide is missing: " << svs_path();
    TempDir out("ips_tiles_unit_resume");
    TilesOptions opt;
    opt.thumb = 256;
    const std::string dir = out.path.string();
    EXPECT_EQ(tiles_check(opt, dir, svs_path()).state, OutputCheck::absent);
    const TilesResult r = tiles_write(opt, dir, svs_path());
    EXPECT_FALSE(r.already_done);
    EXPECT_EQ(r.redone_why, "");
    std::map<std::string, std::string> first;
    for (const char* ext : {".csv", ".png", ".json"}) first[ext] = file_read(r.stem + ext);
    // The JSON is the manifest of the other two.
    const auto j = nlohmann::json::parse(first[".json"]);
    EXPECT_EQ(j["files"]["CMU-1-Small-Region.csv"].get<size_t>(), first[".csv"].size());
    EXPECT_EQ(j["files"]["CMU-1-Small-Region.png"].get<size_t>(), first[".png"].size());
    EXPECT_EQ(j["thumb"].get<int64_t>(), 256);

    // Complete: kept as it is, with the counts it records.
    EXPECT_EQ(tiles_check(opt, dir, svs_path()).state, OutputCheck::complete);
    const auto written = fs::last_write_time(r.stem + ".png");
    const TilesResult again = tiles_write(opt, dir, svs_path());
    EXPECT_TRUE(again.already_done);
    EXPECT_EQ(again.tiles, r.tiles);
    EXPECT_EQ(again.grid_tiles, r.grid_tiles);
    EXPECT_EQ(again.threshold, r.threshold);
    EXPECT_EQ(fs::last_write_time(r.stem + ".png"), written);

    // Incomplete, each named: a cut thumbnail, a cut CSV, a cut manifest, no manifest, other settings.
    const auto redo_after = [&](const std::function<void()>& spoil, const std::string& why) {
        spoil();
        const OutputCheck c = tiles_check(opt, dir, svs_path());
        EXPECT_EQ(c.state, OutputCheck::incomplete) << why;
        EXPECT_NE(c.why.find(why), std::string::npos) << c.why;
        const TilesResult redone = tiles_write(opt, dir, svs_path());
        EXPECT_FALSE(redone.already_done);
        EXPECT_EQ(redone.redone_why, c.why);
        for (const auto& [ext, bytes] : first) EXPECT_EQ(file_read(r.stem + ext), bytes) << ext << " after " << why;
    };
    redo_after([&] { fs::resize_file(r.stem + ".png", first[".png"].size() / 2); }, "CMU-1-Small-Region.png with");
    redo_after([&] { fs::resize_file(r.stem + ".csv", first[".csv"].size() - 3); }, "CMU-1-Small-Region.csv with");
    redo_after([&] { fs::resize_file(r.stem + ".json", 40); }, r.stem + ".json: ");
    redo_after([&] { fs::remove(r.stem + ".json"); }, "missing beside");
    TilesOptions other = opt;
    other.min_tissue = 0.5;
    tiles_write(other, dir, svs_path());
    EXPECT_EQ(tiles_check(other, dir, svs_path()).state, OutputCheck::complete);
    redo_after([] {}, "made with min_tissue 0.5, not 0.01");
}
