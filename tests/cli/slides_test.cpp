// Slides end to end with the ips binary on the real Aperio slide: tiles, features (HDF5,
// resumable, bad slides skipped), training on bags made from it in lazy and eager-sequential
// modes with ROC AUC, CSV data sets of images, read benchmark on a generated pyramid; tiles and
// features over several ranks give one process's files, and a rerun redoes only what is cut short.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "test_support.h"
#include "ips/feature_bag.h"
#include "ips/slide.h"

namespace fs = std::filesystem;
using ips::test::ips_run;
using ips::test::files_of;
using ips::test::lines_of;
using ips::test::TempDir;

namespace {

const std::string kDir = IPS_SOURCE_DIR;
std::string svs_path() { return ips::test::test_slide_path(); }


// Every bag of a folder by name, as "features | coords | patch_size | patch_level" tensors: HDF5
// stamps objects with their modification time, so equal bags need not be equal bytes.
std::map<std::string, std::vector<torch::Tensor>> bags_of(const fs::path& dir) {
    std::map<std::string, std::vector<torch::Tensor>> bags;
    for (const auto& e : fs::directory_iterator(dir)) {
        const ips::FeatureBag bag = ips::feature_bag_read(e.path().string());
        bags[e.path().filename().string()] = {bag.features, bag.coords, torch::tensor(bag.patch_size),
                                              torch::tensor(bag.patch_level)};
    }
    return bags;
}

void bags_expect_equal(const fs::path& dir, const std::map<std::string, std::vector<torch::Tensor>>& want) {
    const auto got = bags_of(dir);
    ASSERT_EQ(got.size(), want.size());
    for (const auto& [name, parts] : want) {
        ASSERT_TRUE(got.count(name)) << name;
        for (size_t k = 0; k < parts.size(); ++k) EXPECT_TRUE(torch::equal(got.at(name)[k], parts[k])) << name << " part " << k;
    }
}

std::vector<std::string> names_of(const std::map<std::string, std::string>& files) {
    std::vector<std::string> names;
    for (const auto& f : files) names.push_back(f.first);
    return names;
}

// As a launcher such as torchrun starts rank `rank` of `world`.
ips::test::CommandResult rank_run(int rank, int world, const std::string& args) {
    return ips::test::command_run("RANK=" + std::to_string(rank) + " WORLD_SIZE=" + std::to_string(world) + " " +
                                  IPS_BINARY + " " + args);
}

// Inputs of a many-slide job: a copy of the real slide, then small generated pyramids (quick to
// tile), each under its own name.
std::string slides_write(const TempDir& dir, const std::vector<std::string>& names) {
    std::string list;
    for (size_t k = 0; k < names.size(); ++k) {
        const std::string path = dir / names[k];
        if (k == 0) fs::copy_file(svs_path(), path);
        else ips::pyramid_tiff_write(path, 1024, 768, k);
        list += " " + path;
    }
    return list;
}

nlohmann::json last_json(const std::string& output) {
    std::istringstream in(output);
    std::string line, last;
    while (std::getline(in, line))
        if (!line.empty() && line[0] == '{') last = line;
    return nlohmann::json::parse(last);
}

}  // namespace

TEST(Slides, TilesWritesCoordinatesThumbnailAndSkipsABadSlide) {
    ASSERT_TRUE(fs::exists(svs_path())) << svs_path();
    TempDir dir("ips_tiles");
    std::ofstream(dir / "broken.svs") << "garbage";
    auto r = ips_run("tiles " + svs_path() + " " + (dir / "broken.svs") + " --out " + (dir / "out") + " --patch 256");
    EXPECT_NE(r.code, 0) << r.output;  // one of two failed
    EXPECT_NE(r.output.find("broken.svs"), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("1 of 2 slides failed"), std::string::npos) << r.output;
    const fs::path out = dir.path / "out";
    auto csv = lines_of(out / "CMU-1-Small-Region.csv");
    ASSERT_GT(csv.size(), 1u);
    EXPECT_EQ(csv[0], "x,y");
    EXPECT_TRUE(fs::exists(out / "CMU-1-Small-Region.png"));
    std::ifstream meta_in(out / "CMU-1-Small-Region.json");
    auto meta = nlohmann::json::parse(meta_in);
    EXPECT_EQ(meta["tiles"].get<size_t>(), csv.size() - 1);
    EXPECT_EQ(meta["grid_tiles"].get<int64_t>(), 88);
    EXPECT_NEAR(meta["mpp"].get<double>(), 0.499, 1e-3);
}

TEST(Slides, FeaturesThenTrainingOnBagsLazyAndEagerSequential) {
    ASSERT_TRUE(fs::exists(svs_path())) << svs_path();
    TempDir dir("ips_features");
    const std::string out = dir / "bags";
    auto f = ips_run("features " + kDir + "/tests/fixtures/features_tiny.yaml " + svs_path() + " --out " + out +
                     " --device cpu --threads 2 --dtype float16");
    ASSERT_EQ(f.code, 0) << f.output;
    const std::string h5 = out + "/CMU-1-Small-Region.h5";
    ips::FeatureBag bag = ips::feature_bag_read(h5);
    EXPECT_EQ(bag.features.scalar_type(), torch::kHalf);
    EXPECT_EQ(bag.features.size(1), 32);
    EXPECT_EQ(bag.coords.size(0), bag.features.size(0));
    EXPECT_EQ(bag.patch_size, 256);
    EXPECT_EQ(bag.patch_level, 0);
    EXPECT_TRUE(torch::isfinite(bag.features.to(torch::kFloat)).all().item<bool>());
    // Refused: ImageNet weights asked for but not given (random features would pass unnoticed).
    auto refused = ips_run("features " + kDir + "/configs/features_resnet50.yaml " + svs_path() + " --out " + (dir / "no"));
    EXPECT_NE(refused.code, 0);
    EXPECT_NE(refused.output.find("encoder_weights"), std::string::npos) << refused.output;
    // Resumable: a second run skips the finished slide.
    auto again = ips_run("features " + kDir + "/tests/fixtures/features_tiny.yaml " + svs_path() + " --out " + out + " --device cpu");
    ASSERT_EQ(again.code, 0) << again.output;
    EXPECT_NE(again.output.find("already done"), std::string::npos) << again.output;

    // A handful of bags cut from the slide's bag, half of them "positive" (rows shifted), in a CSV.
    const int64_t n = bag.features.size(0);
    std::ofstream train(dir / "train.csv"), test(dir / "test.csv");
    train << "path,metastases\n";
    test << "path,metastases\n";
    for (int k = 0; k < 8; ++k) {
        ips::FeatureBag part = bag;
        const int64_t len = n / 2 + k;
        part.features = bag.features.narrow(0, k % (n - len + 1), len).to(torch::kFloat);
        if (k % 2) part.features = part.features + 2.0;
        part.coords = bag.coords.narrow(0, k % (n - len + 1), len);
        const std::string name = "bag" + std::to_string(k) + ".h5";
        ips::feature_bag_write(dir / name, part);
        (k < 6 ? train : test) << name << "," << (k % 2) << "\n";
    }
    test << "missing.h5,1\n";  // reported and left out
    train.close();
    test.close();
    for (const char* mode : {"--set eager=false --set B_seq=4", "--set eager=true --set B_seq=1"}) {
        const std::string run = dir / (std::string("run") + mode[13]);
        auto t = ips_run("train " + kDir + "/tests/fixtures/bags_tiny.yaml --device cpu --threads 2 --quiet --set data_dir=" +
                         dir.path.string() + " " + mode + " --out " + run);
        ASSERT_EQ(t.code, 0) << mode << "\n" << t.output;
        EXPECT_NE(t.output.find("missing.h5"), std::string::npos) << t.output;
        auto metrics = lines_of(fs::path(run) / "metrics.jsonl");
        ASSERT_EQ(metrics.size(), 2u);
        auto j = nlohmann::json::parse(metrics.back());
        ASSERT_TRUE(j["test"]["metastases"]["auc"].is_number()) << metrics.back();
        const double auc = j["test"]["metastases"]["auc"].get<double>();
        EXPECT_GE(auc, 0.0);
        EXPECT_LE(auc, 1.0);
    }
}

TEST(Slides, CsvOfImagesTrainsAndBadRowsAreNamed) {
    TempDir dir("ips_csv_images");
    // Two small RGB images via the pyramid writer (any libvips file works).
    for (int k = 0; k < 2; ++k) {
        auto r = ips_run("data pyramid --width 320 --height 256 --seed " + std::to_string(k) + " --out " +
                         (dir / ("img" + std::to_string(k) + ".tif")));
        ASSERT_EQ(r.code, 0) << r.output;
    }
    // tiny_synthetic's two tasks: `kind` (softmax, 3 classes) and `tags` (multi-label, classes by ';').
    std::ofstream(dir / "train.csv") << "path,kind,tags\nimg0.tif,0,0;2\nimg1.tif,1,1\n";
    std::ofstream(dir / "test.csv") << "path,kind,tags\nimg1.tif,1,1\n";
    const std::string sets = " --set dataset=csv --set data_dir=" + dir.path.string() +
                             " --set n_chan_in=3 --set N=0 --set img_size=[0,0]";
    auto t = ips_run("train " + kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --quiet --set n_epoch=1" + sets +
                     " --set patch_size=[64,64] --set patch_stride=[64,64] --set M=4 --set I=4 --out " + (dir / "run"));
    EXPECT_EQ(t.code, 0) << t.output;
    // A row without its label, an empty path: named with file and line.
    std::ofstream(dir / "train.csv") << "path,kind,tags\nimg0.tif,1\n";
    auto bad = ips_run("train " + kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --quiet" + sets + " --out " + (dir / "bad"));
    EXPECT_NE(bad.code, 0);
    EXPECT_NE(bad.output.find("train.csv:2"), std::string::npos) << bad.output;
    std::ofstream(dir / "train.csv") << "path,kind,tags\n,1,1\n";
    bad = ips_run("train " + kDir + "/tests/fixtures/tiny_synthetic.yaml --device cpu --quiet" + sets + " --out " + (dir / "bad"));
    EXPECT_NE(bad.code, 0);
    EXPECT_NE(bad.output.find("no path"), std::string::npos) << bad.output;
}

TEST(Slides, ReadBenchOnAGeneratedPyramidReportsRateAndMemory) {
    TempDir dir("ips_read_bench");
    const std::string tif = dir / "big.tif";
    auto g = ips_run("data pyramid --width 8192 --height 6144 --out " + tif);
    ASSERT_EQ(g.code, 0) << g.output;
    auto r = ips_run("bench-read " + tif + " --tiles 300 --threads 2 --json");
    ASSERT_EQ(r.code, 0) << r.output;
    auto j = last_json(r.output);
    EXPECT_EQ(j["grid_tiles"].get<int64_t>(), 32 * 24);
    EXPECT_EQ(j["tiles_read"].get<int64_t>(), 300);
    EXPECT_GT(j["patches_per_s"].get<double>(), 0);
    EXPECT_LT(j["peak_rss_gib"].get<double>(), 1.0);
}

TEST(Slides, TilesOnTwoRanksGiveOneProcesssFilesAndARerunRedoesOnlyACutOne) {
    ASSERT_TRUE(fs::exists(svs_path())) << svs_path();
    TempDir dir("ips_tiles_ranks");
    const std::string slides = slides_write(dir, {"a.svs", "b.tif", "c.tif"}), out = dir / "out";
    const std::string args = "tiles" + slides + " --out " + out + " --thumb 512 --threads 1";
    auto one = ips_run(args);
    ASSERT_EQ(one.code, 0) << one.output;
    const auto want = files_of(out);
    ASSERT_EQ(want.size(), 9u);

    // Each rank its share (rank 0: a and b, rank 1: c); together one process's files, byte for byte.
    fs::remove_all(out);
    auto r1 = rank_run(1, 2, args);
    ASSERT_EQ(r1.code, 0) << r1.output;
    EXPECT_NE(r1.output.find("ips tiles: rank 1/2: 1 of 3 slides"), std::string::npos) << r1.output;
    EXPECT_EQ(names_of(files_of(out)), (std::vector<std::string>{"c.csv", "c.json", "c.png"}));
    auto r0 = rank_run(0, 2, args);
    ASSERT_EQ(r0.code, 0) << r0.output;
    EXPECT_NE(r0.output.find("ips tiles: rank 0/2: 2 of 3 slides"), std::string::npos) << r0.output;
    EXPECT_EQ(files_of(out), want);

    fs::remove_all(out);
    auto launched = ips_run(args + " --nproc-per-node 2");
    ASSERT_EQ(launched.code, 0) << launched.output;
    EXPECT_EQ(files_of(out), want);

    // A rerun keeps a and c, and makes b again after its thumbnail was cut short.
    fs::resize_file(fs::path(out) / "b.png", want.at("b.png").size() / 2);
    auto rerun = ips_run(args);
    ASSERT_EQ(rerun.code, 0) << rerun.output;
    EXPECT_NE(rerun.output.find("a.svs: already done"), std::string::npos) << rerun.output;
    EXPECT_NE(rerun.output.find("c.tif: already done"), std::string::npos) << rerun.output;
    EXPECT_NE(rerun.output.find("ips tiles: made " + (dir / "b.tif") + " again; the earlier output was incomplete"),
              std::string::npos)
        << rerun.output;
    EXPECT_EQ(files_of(out), want);
}

TEST(Slides, FeaturesOnTwoRanksGiveOneProcesssBagsAndARerunRedoesOnlyACutOne) {
    ASSERT_TRUE(fs::exists(svs_path())) << svs_path();
    TempDir dir("ips_features_ranks");
    const std::string slides = slides_write(dir, {"a.svs", "b.tif"}), out = dir / "out";
    const std::string args = "features " + kDir + "/tests/fixtures/features_tiny.yaml" + slides + " --out " + out +
                             " --device cpu --threads 1";
    auto one = ips_run(args);
    ASSERT_EQ(one.code, 0) << one.output;
    ASSERT_EQ(names_of(files_of(out)), (std::vector<std::string>{"a.h5", "b.h5"}));
    const auto want = bags_of(out);
    const auto b_size = fs::file_size(fs::path(out) / "b.h5");

    fs::remove_all(out);
    auto r1 = rank_run(1, 2, args);
    ASSERT_EQ(r1.code, 0) << r1.output;
    EXPECT_EQ(names_of(files_of(out)), (std::vector<std::string>{"b.h5"}));
    auto r0 = rank_run(0, 2, args);
    ASSERT_EQ(r0.code, 0) << r0.output;
    bags_expect_equal(out, want);

    fs::remove_all(out);
    auto launched = ips_run(args + " --nproc-per-node 2");
    ASSERT_EQ(launched.code, 0) << launched.output;
    bags_expect_equal(out, want);

    fs::resize_file(fs::path(out) / "b.h5", b_size - 100);
    auto rerun = ips_run(args);
    ASSERT_EQ(rerun.code, 0) << rerun.output;
    EXPECT_NE(rerun.output.find("a.svs: already done"), std::string::npos) << rerun.output;
    EXPECT_NE(rerun.output.find("ips features: made " + (dir / "b.tif") + " again; the earlier output was incomplete"),
              std::string::npos)
        << rerun.output;
    bags_expect_equal(out, want);
}

// A cohort with a damaged slide in the middle: it is named and skipped, the others are extracted,
// the job says how many failed; once the slide is replaced, a rerun makes only that one.
TEST(Slides, FeaturesSkipAFailingSlideGoOnAndARerunMakesOnlyWhatIsMissing) {
    ASSERT_TRUE(fs::exists(svs_path())) << svs_path();
    TempDir dir("ips_features_skip");
    const std::string good = slides_write(dir, {"a.svs", "c.tif"}), out = dir / "out";
    {
        std::ifstream in(dir / "c.tif", std::ios::binary);
        std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::ofstream(dir / "b.tif", std::ios::binary) << bytes.substr(0, bytes.size() / 3);  // cut short
    }
    const std::string args = "features " + kDir + "/tests/fixtures/features_tiny.yaml " + dir / "a.svs" + " " +
                             dir / "b.tif" + " " + dir / "c.tif" + " --out " + out + " --device cpu --threads 1";
    auto first = ips_run(args);
    EXPECT_NE(first.code, 0) << first.output;
    EXPECT_LT(first.code, 128) << first.output;
    EXPECT_NE(first.output.find("skipped " + dir / "b.tif"), std::string::npos) << first.output;
    EXPECT_NE(first.output.find("1 of 3 slides failed"), std::string::npos) << first.output;
    EXPECT_EQ(names_of(files_of(out)), (std::vector<std::string>{"a.h5", "c.h5"}));  // nothing of b

    fs::copy_file(dir / "c.tif", dir / "b.tif", fs::copy_options::overwrite_existing);
    auto rerun = ips_run(args);
    ASSERT_EQ(rerun.code, 0) << rerun.output;
    EXPECT_NE(rerun.output.find("a.svs: already done"), std::string::npos) << rerun.output;
    EXPECT_NE(rerun.output.find("c.tif: already done"), std::string::npos) << rerun.output;
    EXPECT_EQ(names_of(files_of(out)), (std::vector<std::string>{"a.h5", "b.h5", "c.h5"}));
}
