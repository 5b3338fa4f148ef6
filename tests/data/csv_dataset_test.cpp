// `dataset: csv`: rows `path,label...` naming feature bags (per-slide files or groups of the
// reference's single file), images and slides, read from files written here in their real
// formats and from the real Aperio slide; bad rows named by file and line, unreadable files
// reported and left out.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "data/test_data.h"
#include "ips/csv_dataset.h"
#include "ips/dataset.h"
#include "ips/feature_bag.h"
#include "ips/image_io.h"
#include "ips/slide.h"
#include "ips/tissue.h"

namespace fs = std::filesystem;
using namespace ips;
using test::error_of;
using test::TempDir;

namespace {

Config bag_config(const TempDir& dir) { return test::bag_dataset_config("csv", dir.path, 8, "label"); }

Config image_config(const TempDir& dir) {
    Config c = bag_config(dir);
    c.model.is_image = true;
    c.model.n_chan_in = 1;
    c.model.n_class = 3;
    c.model.tasks = {Task{0, "kind", ActFn::softmax, Metric::accuracy},
                     Task{1, "tags", ActFn::sigmoid, Metric::multilabel_accuracy}};
    c.data.img_size = {32, 48};
    c.data.patch_size = c.data.patch_stride = {16, 16};
    return c;
}

FeatureBag bag_of(int64_t n, torch::ScalarType dtype, double offset) {
    FeatureBag b;
    b.features = (torch::arange(n * 8, torch::kFloat32).view({n, 8}) / 10 + offset).to(dtype);
    b.coords = torch::arange(n * 2, torch::kLong).view({n, 2}) * 256;
    b.patch_size = 256;
    return b;
}

torch::Tensor all_rows(const Example& ex) { return ex.source->read_range(0, ex.source->size()); }

void write(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary) << text; }

}  // namespace

TEST(CsvDataset, BagsFromPerSlideFilesAndReferenceGroups) {
    TempDir dir;
    fs::create_directories(dir.path / "bags");
    const FeatureBag a = bag_of(5, torch::kFloat32, 0), b = bag_of(3, torch::kHalf, 1);
    feature_bag_write(dir / "bags/a.h5", a);
    feature_bag_write(dir / "bags/b.h5", b);
    const auto s2 = torch::full({4, 8}, 2.5f);
    feature_bag_group_write(dir / "ref.hdf5", "s1", torch::zeros({2, 8}), 0);
    feature_bag_group_write(dir / "ref.hdf5", "s2", s2, 1);
    // A spreadsheet's export: byte order mark, CRLF, a header, comments, blank lines, spaces.
    write(dir.path / "train.csv", "\xEF\xBB\xBFpath,label\r\n# bags of the first site\r\nbags/a.h5,1\r\n\r\n  bags/b.h5 , 0 \r\n"
                                  "ref.hdf5#s2,1\r\n" + (dir / "bags/a.h5") + ",0\r\n");
    const Config cfg = bag_config(dir);
    auto ds = dataset_open(cfg, "train");
    ASSERT_EQ(ds->size(), 4);
    const Example e0 = ds->get(0), e1 = ds->get(1), e2 = ds->get(2), e3 = ds->get(3);
    EXPECT_EQ(fs::path(e0.name), dir.path / "bags/a.h5");  // relative to the CSV's folder
    EXPECT_TRUE(torch::equal(all_rows(e0), a.features));
    EXPECT_TRUE(torch::equal(all_rows(e1), b.features.to(torch::kFloat32)));
    EXPECT_TRUE(torch::equal(all_rows(e2), s2));
    EXPECT_TRUE(torch::equal(all_rows(e3), a.features));
    EXPECT_EQ(e0.source->patch_origin(1), (std::array<int64_t, 2>{512, 768}));  // the bag's coords
    const std::vector<int64_t> labels = {1, 0, 1, 0};
    for (int64_t i = 0; i < 4; ++i) {
        const Example ex = ds->get(i);
        ASSERT_EQ(ex.targets.size(), 1u);
        EXPECT_EQ(ex.targets[0].item<int64_t>(), labels[size_t(i)]) << i;
    }

    // The test split from test_fname; no header needed.
    write(dir.path / "held_out.csv", "bags/b.h5,1\n");
    Config held = cfg;
    held.data.test_fname = "held_out.csv";
    auto test = csv_dataset_make(held, "test");
    ASSERT_EQ(test->size(), 1);
    EXPECT_EQ(test->get(0).targets[0].item<int64_t>(), 1);
}

TEST(CsvDataset, UnreadableFilesAreReportedAndLeftOut) {
    TempDir dir;
    feature_bag_write(dir / "good.h5", bag_of(2, torch::kFloat32, 0));
    write(dir.path / "broken.h5", "not an HDF5 file");
    write(dir.path / "train.csv", "path,label\nmissing.h5,1\ngood.h5,0\nbroken.h5,1\n");
    const Config cfg = bag_config(dir);
    testing::internal::CaptureStderr();
    auto ds = csv_dataset_make(cfg, "train");
    const std::string err = testing::internal::GetCapturedStderr();
    ASSERT_EQ(ds->size(), 1);
    EXPECT_EQ(fs::path(ds->get(0).name).filename(), "good.h5");
    EXPECT_NE(err.find("warning: skipped " + (dir / "train.csv") + ":2: "), std::string::npos) << err;
    EXPECT_NE(err.find("missing.h5"), std::string::npos) << err;
    EXPECT_NE(err.find("train.csv:4"), std::string::npos) << err;
    EXPECT_NE(err.find("2 of 3 rows skipped"), std::string::npos) << err;

    // Nothing readable at all: an error, not an empty data set.
    write(dir.path / "train.csv", "path,label\nmissing.h5,1\n");
    testing::internal::CaptureStderr();
    const std::string e = error_of([&] { csv_dataset_make(cfg, "train"); });
    testing::internal::GetCapturedStderr();
    EXPECT_NE(e.find("no usable rows"), std::string::npos) << e;
}

TEST(CsvDataset, BadRowsAreFatalAndNamedByFileAndLine) {
    TempDir dir;
    feature_bag_write(dir / "a.h5", bag_of(2, torch::kFloat32, 0));
    const Config cfg = bag_config(dir);
    const std::string csv = dir / "train.csv";
    struct Case {
        std::string text, why;
    };
    const std::vector<Case> cases = {
        {"path,label\na.h5,1\na.h5\n", csv + ":3: 1 label column(s) expected (one per task), found 0"},
        {"path,label\na.h5,1,0\n", csv + ":2: 1 label column(s) expected (one per task), found 2"},
        {"path,label\n,1\n", csv + ":2: the row has no path"},
        {"path,label\na.h5,yes\n", csv + ":2: label 'yes' of task 'label' is not a number"},
        {"path,label\na.h5,2\n", csv + ":2: label 2 of task 'label' is not a class in [0, 2)"},
        {"path,label\n# nothing\n\n", "data set '" + csv + "': no rows"},
    };
    for (const auto& c : cases) {
        write(csv, c.text);
        const std::string e = error_of([&] { csv_dataset_make(cfg, "train"); });
        EXPECT_NE(e.find(c.why), std::string::npos) << c.text << "\ngot: " << e;
    }
    // A bag where images are expected, and the other way round: the key to fix.
    write(csv, "path,label\na.h5,1\n");
    Config images = cfg;
    images.model.is_image = true;
    std::string e = error_of([&] { csv_dataset_make(images, "train"); });
    EXPECT_NE(e.find("config key 'is_image'"), std::string::npos) << e;
    EXPECT_NE(e.find(csv + ":2"), std::string::npos) << e;
    png_write(dir / "img.png", torch::zeros({1, 8, 8}, torch::kUInt8));
    write(csv, "path,label\nimg.png,1\n");
    e = error_of([&] { csv_dataset_make(cfg, "train"); });
    EXPECT_NE(e.find("config key 'is_image'"), std::string::npos) << e;
    EXPECT_THROW(csv_dataset_make(cfg, "train"), ConfigError);
    // No CSV at all.
    fs::remove(csv);
    e = error_of([&] { csv_dataset_make(cfg, "train"); });
    EXPECT_NE(e.find("config key 'train_fname'"), std::string::npos) << e;
}

TEST(CsvDataset, ImagesAreResizedToImgSizeAndCutByTheGrid) {
    TempDir dir;
    // Two grey PNGs of another size than the configured 32 x 48.
    auto y = torch::arange(50).view({50, 1}), x = torch::arange(70).view({1, 70});
    const auto img0 = ((x * 3 + y * 2) % 256).to(torch::kUInt8).unsqueeze(0);
    const auto img1 = (255 - img0.to(torch::kInt)).to(torch::kUInt8);
    png_write(dir / "img0.png", img0);
    png_write(dir / "img1.png", img1);
    write(dir.path / "train.csv", "path,kind,tags\nimg0.png,2,0;2\nimg1.png,0,1\n");
    const Config cfg = image_config(dir);
    auto ds = csv_dataset_make(cfg, "train");
    ASSERT_EQ(ds->size(), 2);
    const Example ex = ds->get(0);
    ASSERT_EQ(ex.source->size(), 2 * 3);  // 32 x 48 in 16 x 16 patches
    EXPECT_EQ(ex.source->grid_cols(), 3);
    EXPECT_EQ(ex.source->patch_shape(), (std::vector<int64_t>{1, 16, 16}));
    const auto resized = image_resize(img0, 32, 48).to(torch::kFloat32) / 255.0;  // [1, 32, 48]
    const auto patches = all_rows(ex);                                             // [6, 1, 16, 16]
    EXPECT_TRUE(torch::allclose(patches[4], resized.slice(1, 16, 32).slice(2, 16, 32)));
    EXPECT_TRUE(torch::allclose(patches[2], resized.slice(1, 0, 16).slice(2, 32, 48)));
    ASSERT_EQ(ex.targets.size(), 2u);
    EXPECT_EQ(ex.targets[0].item<int64_t>(), 2);
    EXPECT_TRUE(torch::equal(ex.targets[1], torch::tensor({1.f, 0.f, 1.f})));
    const Example other = ds->get(1);
    EXPECT_TRUE(torch::equal(other.targets[1], torch::tensor({0.f, 1.f, 0.f})));
    EXPECT_TRUE(torch::allclose(all_rows(other), 1.0 - patches, 0, 1.5 / 255));
}

TEST(CsvDataset, SlidesUseTheTileGridOfTheConfig) {
    const std::string svs = test::test_slide_path();
    ASSERT_TRUE(fs::exists(svs)) << "the Aperio test slide is missing: " << svs;
    TempDir dir;
    write(dir.path / "train.csv", "path,label\n" + svs + ",1\n");
    Config cfg = bag_config(dir);
    cfg.model.is_image = true;
    cfg.model.n_chan_in = 3;
    cfg.data.img_size = {0, 0};
    cfg.data.patch_size = cfg.data.patch_stride = {256, 256};
    cfg.data.tissue = true;
    cfg.data.tissue_min = 0.25;
    auto ds = csv_dataset_make(cfg, "train");
    ASSERT_EQ(ds->size(), 1);
    const Example ex = ds->get(0);
    auto slide = slide_open(svs);
    const TileGrid grid = tile_grid_make(*slide, cfg.data);
    ASSERT_EQ(ex.source->size(), grid.coords.size(0));
    EXPECT_LT(ex.source->size(), 88);  // tissue tiles only
    EXPECT_EQ(ex.source->grid_cols(), 8);
    const int64_t last = ex.source->size() - 1;
    const auto origin = ex.source->patch_origin(last);
    EXPECT_EQ(origin[0], grid.coords[last][0].item<int64_t>());
    EXPECT_EQ(origin[1], grid.coords[last][1].item<int64_t>());
    const auto patch = ex.source->read(torch::tensor({last}, torch::kLong))[0];  // [3, 256, 256]
    const auto region = slide_read_region(*slide, 0, origin[0], origin[1], 256, 256).to(torch::kFloat32) / 255.0;
    EXPECT_TRUE(torch::allclose(patch, region, 0, 1e-6));
    EXPECT_EQ(ex.targets[0].item<int64_t>(), 1);
}

// A multi-label task with no class present is an empty cell (target_parse gives all zeros). A
// spreadsheet writes such a row's last cell as a trailing comma: "img.png,0,".
TEST(CsvDataset, AnEmptyLastCellMeansNoClassPresent) {
    TempDir dir;
    png_write(dir / "img.png", torch::zeros({1, 32, 48}, torch::kUInt8));
    write(dir.path / "train.csv", "path,kind,tags\nimg.png,1,1\nimg.png,0,\n");
    const Config cfg = image_config(dir);
    DatasetPtr ds;
    const std::string e = error_of([&] { ds = csv_dataset_make(cfg, "train"); });
    ASSERT_EQ(e, "(no exception)") << "the row 'img.png,0,' has its two label cells";
    ASSERT_EQ(ds->size(), 2);
    EXPECT_TRUE(torch::equal(ds->get(1).targets[1], torch::zeros({3})));
}
