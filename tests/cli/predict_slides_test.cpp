// `ips predict` on whole slides as a user runs it: a generated pyramid with a known needle and a
// model pointed at it (needle.h). Every output lands in --out; the viewer page loads in headless
// Chromium with the slide and the scores drawn and no error; a cohort from --csv or a folder
// writes predictions.csv, reports a bad input and goes on, and a rerun predicts nothing again;
// peak memory does not grow with the number of patches.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "needle.h"
#include "test_support.h"
#include "ips/image_io.h"
#include "ips/tissue.h"

namespace fs = std::filesystem;
using ips::test::command_run;
using ips::test::ips_run;
using ips::test::lines_of;
using ips::test::TempDir;

namespace {

const std::string kDir = IPS_SOURCE_DIR;

// Copies a test's files where IPS_TEST_ARTIFACTS says, for a person to look at (docs/SLIDES.md's
// pictures come from here).
void artifacts_keep(const fs::path& from, const std::string& name) {
    const char* to = std::getenv("IPS_TEST_ARTIFACTS");
    if (!to || !*to) return;
    fs::create_directories(fs::path(to) / name);
    fs::copy(from, fs::path(to) / name, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

// One needle pyramid and the weights pointed at it, shared by the tests of this file.
class PredictSlides : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        dir = new TempDir("ips_predict_slides");
        slide = *dir / "needle.tif";
        weights = *dir / "needle.pt";
        ips::test::NeedleScene scene;
        scene.write(slide);
        const ips::Config cfg = ips::config_load(ips::test::kSlideTinyYaml);
        ips::test::needle_weights_save(weights, cfg, slide, scene);
        artifacts_keep(dir->path, "scene");
    }
    static void TearDownTestSuite() { delete dir; }
    static std::string predict(const std::string& args) {
        return "predict " + ips::test::kSlideTinyYaml + " --weights " + weights + " --device cpu " + args;
    }
    static TempDir* dir;
    static std::string slide, weights;
};
TempDir* PredictSlides::dir = nullptr;
std::string PredictSlides::slide, PredictSlides::weights;

nlohmann::json json_line(const std::string& output) {
    std::istringstream in(output);
    for (std::string line; std::getline(in, line);)
        if (!line.empty() && line[0] == '{') return nlohmann::json::parse(line);
    return {};
}

}  // namespace

TEST_F(PredictSlides, EveryOutputForOneSlideAndTheViewerDrawsInChromium) {
    const std::string out = *dir / "one";
    auto r = ips_run(predict("--json --out " + out + " " + slide));
    ASSERT_EQ(r.code, 0) << r.output;
    // The JSON line as before: the needle's four tiles are the kept ones.
    const auto j = json_line(r.output);
    EXPECT_EQ(j["image"], slide);
    EXPECT_EQ(j["N"], 192);
    EXPECT_EQ(j.size(), 5u) << j.dump();
    std::set<int64_t> kept(j["selected"].begin(), j["selected"].end());
    EXPECT_EQ(kept, (std::set<int64_t>{72, 73, 88, 89}));
    EXPECT_NE(r.output.find("encoder busy"), std::string::npos) << r.output;

    const fs::path files = fs::path(out) / "needle";
    for (const char* f : {"heatmap.png", "overlay.tif", "patches.geojson", "gallery.png", "viewer/index.html",
                          "viewer/slide.dzi", "viewer/scores.dzi", "viewer/openseadragon.min.js"})
        EXPECT_TRUE(fs::is_regular_file(files / f)) << f;
    EXPECT_TRUE(fs::is_directory(files / "viewer" / "slide_files"));
    const auto csv = lines_of(fs::path(out) / "predictions.csv");
    ASSERT_EQ(csv.size(), 2u);
    EXPECT_EQ(csv[0], "input,slide_p0,slide_p1,slide_class");
    EXPECT_EQ(csv[1].rfind(slide + ",", 0), 0u) << csv[1];
    const auto timings = nlohmann::json::parse(lines_of(fs::path(out) / "timings.jsonl").at(0));
    EXPECT_EQ(timings["patches"], 192);
    EXPECT_GT(timings["encoder_busy"].get<double>(), 0.0);
    EXPECT_GT(timings["peak_rss_mb"].get<double>(), 0.0);

    // Headless Chromium opens the page from disk: both layers draw tiles, nothing errs, and the
    // screenshot of the viewer is a picture, not a blank canvas.
    const fs::path page = files / "viewer" / "index.html";
    const std::string chromium = "chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,800 "
                                 "--virtual-time-budget=20000 --enable-logging=stderr --v=0 ";
    const fs::path dom = *dir / "dom.html", log = *dir / "chromium.log", shot = *dir / "viewer.png";
    r = command_run(chromium + "--dump-dom file://" + page.string() + " > " + dom.string() + " 2> " + log.string());
    ASSERT_EQ(r.code, 0) << r.output << ips::test::file_text(log);
    const std::string html = ips::test::file_text(dom);
    int slide_tiles = -1, score_tiles = -1, failed = -1, errors = -1;
    const auto at = html.find("tiles drawn: slide ");
    ASSERT_NE(at, std::string::npos) << html;
    ASSERT_EQ(std::sscanf(html.c_str() + at, "tiles drawn: slide %d, scores %d; failed %d; errors %d", &slide_tiles,
                          &score_tiles, &failed, &errors),
              4);
    EXPECT_GT(slide_tiles, 0);
    EXPECT_GT(score_tiles, 0);
    EXPECT_EQ(failed, 0);
    EXPECT_EQ(errors, 0);
    for (const auto& line : lines_of(log))
        if (line.find("CONSOLE") != std::string::npos)
            ADD_FAILURE() << "the page logged: " << line;
    r = command_run(chromium + "--screenshot=" + shot.string() + " file://" + page.string() + " 2>/dev/null");
    ASSERT_EQ(r.code, 0) << r.output;
    const auto png = ips::image_read(shot.string(), 3).to(torch::kFloat32);
    const auto view = png.index({torch::indexing::Slice(), torch::indexing::Slice(100, 700), torch::indexing::Slice(400, 1150)});
    EXPECT_GT(view.std().item<double>(), 20.0);  // a blank canvas is flat
    // The slide's pink texture and the scores' blue both show: purple-blue where they blend.
    const auto blue_over_red = (view[2] - view[0]).gt(20).to(torch::kFloat32).mean().item<double>();
    EXPECT_GT(blue_over_red, 0.2);
    artifacts_keep(files, "needle");
    fs::copy_file(shot, fs::path(out) / "viewer-screenshot.png");
    artifacts_keep(fs::path(out) / "viewer-screenshot.png", "needle");
}

TEST_F(PredictSlides, TheRealAperioSlideTissueTilesAtTheirLevel0PositionsAndAnAlignedOverlay) {
    // Random weights: this checks where the files put the tiles, not what the model thinks.
    TempDir d("ips_predict_svs");
    const std::string svs = ips::test::test_slide_path();
    ips::Config cfg = ips::config_load(ips::test::kSlideTinyYaml);
    cfg.data.tissue = true;
    ips::IPSNet net = ips::net_make(cfg.model, cfg.compute, cfg.seed);
    ips::checkpoint_save(d / "random.pt", net, nullptr, ips::CheckpointMeta{});
    const std::string out = d / "out";
    auto r = ips_run("predict " + ips::test::kSlideTinyYaml + " --set tissue=true --weights " + (d / "random.pt") +
                     " --device cpu --json --outputs heatmap,overlay,geojson,gallery --out " + out + " " + svs);
    ASSERT_EQ(r.code, 0) << r.output;
    auto slide_file = ips::slide_open(svs);
    const ips::TileGrid tiles = ips::tile_grid_make(*slide_file, cfg.data);
    const auto j = json_line(r.output);
    EXPECT_EQ(j["N"], tiles.coords.size(0));
    const fs::path files = fs::path(out) / fs::path(svs).stem();
    const auto geo = nlohmann::json::parse(ips::test::file_text(files / "patches.geojson"));
    ASSERT_EQ(int64_t(geo["features"].size()), tiles.coords.size(0));
    for (int64_t n = 0; n < tiles.coords.size(0); ++n) {
        const auto& ring = geo["features"][size_t(n)]["geometry"]["coordinates"][0];
        const int64_t x = tiles.coords[n][0].item<int64_t>(), y = tiles.coords[n][1].item<int64_t>();
        ASSERT_EQ(ring[0], nlohmann::json::array({x, y})) << n;
        ASSERT_EQ(ring[2], nlohmann::json::array({x + 128, y + 128})) << n;
    }
    // OpenSlide opens the overlay with the slide's own size.
    r = command_run("/usr/bin/python3 " + kDir + "/tests/peer/explain_peer.py overlay " + (files / "overlay.tif").string() +
                    " 0 0 0 0");
    ASSERT_EQ(r.code, 0) << r.output;
    const auto& L0 = ips::slide_levels(*slide_file)[0];
    EXPECT_NE(r.output.find("dimensions " + std::to_string(L0.width) + " " + std::to_string(L0.height)), std::string::npos)
        << r.output;
    EXPECT_TRUE(fs::is_regular_file(files / "heatmap.png"));
    EXPECT_TRUE(fs::is_regular_file(files / "gallery.png"));
    artifacts_keep(files, "svs");
}

TEST_F(PredictSlides, ACohortFromACsvOrAFolderSkipsABadInputAndResumes) {
    TempDir cohort("ips_predict_cohort");
    const std::string second = cohort / "second.tif";
    ips::pyramid_tiff_write(second, 1024, 768, 3);
    std::ofstream(cohort / "list.csv") << "path,label\n" << slide << ",1\nmissing.tif,0\nsecond.tif,0\n";
    const std::string out = cohort / "out";
    auto r = ips_run(predict("--quiet --outputs geojson --csv " + (cohort / "list.csv") + " --out " + out));
    EXPECT_NE(r.code, 0) << r.output;
    EXPECT_NE(r.output.find("skipped " + (cohort / "missing.tif")), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("1 of 3 inputs failed"), std::string::npos) << r.output;
    auto csv = lines_of(fs::path(out) / "predictions.csv");
    ASSERT_EQ(csv.size(), 3u);  // header, the needle slide, the second
    EXPECT_EQ(csv[1].rfind(slide + ",", 0), 0u);
    EXPECT_EQ(csv[2].rfind(second + ",", 0), 0u);
    EXPECT_TRUE(fs::exists(fs::path(out) / "second" / "patches.geojson"));
    EXPECT_FALSE(fs::exists(fs::path(out) / "second" / "heatmap.png"));
    const size_t predicted = lines_of(fs::path(out) / "timings.jsonl").size();
    EXPECT_EQ(predicted, 2u);

    // The rerun predicts nothing again and writes the same table.
    r = ips_run(predict("--quiet --outputs geojson --csv " + (cohort / "list.csv") + " --out " + out));
    EXPECT_NE(r.code, 0);
    EXPECT_NE(r.output.find("already done"), std::string::npos) << r.output;
    EXPECT_EQ(lines_of(fs::path(out) / "timings.jsonl").size(), predicted);
    EXPECT_EQ(lines_of(fs::path(out) / "predictions.csv"), csv);

    // A folder: its slides in name order.
    fs::create_directories(cohort / "folder");
    fs::copy_file(second, cohort.path / "folder" / "b.tif");
    ips::pyramid_tiff_write((cohort.path / "folder" / "a.tif").string(), 768, 512, 4);
    std::ofstream(cohort.path / "folder" / "notes.txt") << "not an image";
    r = ips_run(predict("--quiet --outputs none " + (cohort / "folder") + " --out " + (cohort / "out2")));
    ASSERT_EQ(r.code, 0) << r.output;
    csv = lines_of(fs::path(cohort / "out2") / "predictions.csv");
    ASSERT_EQ(csv.size(), 3u);
    EXPECT_NE(csv[1].find("a.tif,"), std::string::npos);
    EXPECT_NE(csv[2].find("b.tif,"), std::string::npos);
}

TEST_F(PredictSlides, PeakMemoryDoesNotGrowWithTheSlide) {
    // 16 times the patches (1,024 and 16,384). Reading the level-0 image whole would add 800 MB
    // of RGB, and a leak of the size once found here (26 KB per patch, threads started per
    // chunk) 400 MB. What stays is run-to-run noise of glibc's per-thread arenas, whose high-water
    // marks are kept (big buffers stay on the heap, runtime.h): measured 7 to 70 MB on a quiet
    // machine, 167 MB on one also building and running other tests.
    TempDir d("ips_predict_memory");
    double rss[2] = {0, 0};
    const int64_t side[2] = {4096, 16384};
    for (int k = 0; k < 2; ++k) {
        const std::string tif = d / ("p" + std::to_string(k) + ".tif");
        ips::pyramid_tiff_write(tif, side[k], side[k], 5);
        auto r = ips_run(predict("--quiet --set I=64 --outputs none --out " + (d / ("o" + std::to_string(k))) + " " + tif));
        ASSERT_EQ(r.code, 0) << r.output;
        rss[k] = nlohmann::json::parse(lines_of(fs::path(d / ("o" + std::to_string(k))) / "timings.jsonl").at(0))["peak_rss_mb"];
    }
    std::printf("peak RSS: %.0f MB for %lld patches, %.0f MB for %lld\n", rss[0], (long long)(side[0] / 128) * (side[0] / 128),
                rss[1], (long long)(side[1] / 128) * (side[1] / 128));
    EXPECT_LT(rss[1] - rss[0], 300.0);
}
