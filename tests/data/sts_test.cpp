// Swedish traffic signs: annotations parsing, the labelling rules of SPEC §2.2, and the data set over
// a tiny fixture of real JPEG frames written at run time in the real folder layout.
#include <gtest/gtest.h>
#include <vips/vips8>

#include <filesystem>
#include <fstream>

#include "test_support.h"
#include "ips/image_io.h"
#include "ips/sts.h"

namespace fs = std::filesystem;
using namespace ips;
using test::TempDir;

using ips::test::error_of;

namespace {

constexpr int kW = 320, kH = 240;  // fixture frames (the real ones are 1280 x 960)

// A frame with a colour gradient so that shifts and colour changes show; `flat` = one solid colour.
void jpeg_write(const fs::path& path, int seed, bool flat = false) {
    vips_ensure_init();
    std::vector<uint8_t> hwc(static_cast<size_t>(kW) * kH * 3);
    for (int y = 0; y < kH; ++y)
        for (int x = 0; x < kW; ++x)
            for (int c = 0; c < 3; ++c)
                hwc[(static_cast<size_t>(y) * kW + x) * 3 + c] =
                    flat ? static_cast<uint8_t>(c == 0 ? 200 : c == 1 ? 100 : 50)
                         : static_cast<uint8_t>((x / 2 + y / 3 + 70 * c + 30 * seed) % 256);
    vips::VImage img = vips::VImage::new_from_memory(hwc.data(), hwc.size(), kW, kH, 3, VIPS_FORMAT_UCHAR);
    img.jpegsave(path.string().c_str(), vips::VImage::option()->set("Q", 95));
}

void text_write(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary);
    out << text;
}

// Set1: every rule of §2.2 once. Set2: a 50 limit, an empty frame and a dropped one.
const char* kSet1 =
    "f0.jpg:VISIBLE, 404.72l, 300.5, 380.1, 270.0x, SPEED_LIMIT, 70_SIGN;\n"
    "f1.jpg:BLURRED, 100, 100, 50, 50, SPEED_LIMIT, 50_SIGN;OCCLUDED, 300, 300, 0, 0, SPEED_LIMIT, 80_SIGN;\n"
    "f2.jpg:VISIBLE, 10, 10, 0, 0, PRIORITY_ROAD, PRIORITY_ROAD;\n"
    "\n"
    "f3.jpg:\n"
    "f4.jpg:MISC_SIGNS;\r\n"
    "f5.jpg:VISIBLE, 20, 20, 10, 10, SPEED_LIMIT, 50_SIGN;VISIBLE, 40, 40, 20, 20, SPEED_LIMIT, 80_SIGN;"
    "VISIBLE, 90, 90, 0, 0, PEDESTRIAN_CROSSING, PEDESTRIAN_CROSSING;\n";
const char* kSet2 =
    "a.jpg:VISIBLE, 200, 150, 180, 130, SPEED_LIMIT, 50_SIGN;\n"
    "b.jpg:\n"
    "c.jpg:SIDE_ROAD, 200, 150, 180, 130, SPEED_LIMIT, 70_SIGN;\n";

void fixture_write(const fs::path& root, bool with_set2 = true) {
    fs::create_directories(root / "Set1");
    text_write(root / "Set1/annotations.txt", kSet1);
    for (int i = 0; i < 6; ++i) jpeg_write(root / "Set1" / ("f" + std::to_string(i) + ".jpg"), i);
    if (!with_set2) return;
    fs::create_directories(root / "Set2");
    text_write(root / "Set2/annotations.txt", kSet2);
    jpeg_write(root / "Set2/a.jpg", 7);
    jpeg_write(root / "Set2/b.jpg", 8, /*flat=*/true);
    jpeg_write(root / "Set2/c.jpg", 9);
}

Config sts_config(const fs::path& root) {
    Config cfg;
    cfg.data.dataset = "traffic_signs";
    cfg.data.data_dir = root.string();
    cfg.model.is_image = true;
    cfg.model.n_chan_in = 3;
    cfg.model.n_class = 4;
    cfg.data.normalize = Normalize::imagenet;
    cfg.data.img_size = {120, 160};
    cfg.data.patch_size = {40, 40};
    cfg.data.patch_stride = {40, 40};
    cfg.data.N = 12;  // 3 x 4 grid
    cfg.seed = 3;
    cfg.model.tasks = {Task{0, "sign", ActFn::softmax, Metric::accuracy}};
    return cfg;
}

torch::Tensor all_patches(const Example& ex) { return ex.source->read_range(0, ex.source->size()); }

}  // namespace

TEST(Sts, ParsesFieldsJunkNumbersMiscSignsAndLineEndings) {
    TempDir dir;
    text_write(dir.path / "annotations.txt", kSet1);
    auto frames = sts_annotations_read(dir / "annotations.txt");
    ASSERT_EQ(frames.size(), 6u);  // the blank line is no frame
    const StsSign& s = frames[0].signs.at(0);
    EXPECT_EQ(frames[0].file, "f0.jpg");
    EXPECT_EQ(s.visibility, "VISIBLE");
    EXPECT_DOUBLE_EQ(s.x_max, 404.72);  // "404.72l"
    EXPECT_DOUBLE_EQ(s.y_max, 300.5);
    EXPECT_DOUBLE_EQ(s.x_min, 380.1);
    EXPECT_DOUBLE_EQ(s.y_min, 270.0);   // "270.0x"
    EXPECT_EQ(s.type, "SPEED_LIMIT");
    EXPECT_EQ(s.name, "70_SIGN");
    EXPECT_EQ(frames[1].signs.size(), 2u);
    EXPECT_EQ(frames[1].signs[1].name, "80_SIGN");
    EXPECT_TRUE(frames[3].signs.empty());
    EXPECT_EQ(frames[4].file, "f4.jpg");    // CRLF line
    EXPECT_TRUE(frames[4].signs.empty());   // MISC_SIGNS left out
    EXPECT_EQ(frames[5].signs.size(), 3u);
    EXPECT_EQ(frames[5].signs[2].name, "PEDESTRIAN_CROSSING");
}

TEST(Sts, LabelsFollowTheRules) {
    TempDir dir;
    text_write(dir.path / "annotations.txt", kSet1);
    auto frames = sts_annotations_read(dir / "annotations.txt");
    EXPECT_EQ(sts_classes(), (std::vector<std::string>{"EMPTY", "50_SIGN", "70_SIGN", "80_SIGN"}));
    std::vector<int> labels;
    for (const auto& f : frames) labels.push_back(sts_frame_label(f));
    // 70 visible; best limit blurred -> dropped; other sign only -> dropped; empty; MISC only -> empty;
    // two visible limits -> the larger (80, area 400) beats the smaller (50, area 100).
    EXPECT_EQ(labels, (std::vector<int>{2, -1, -1, 0, 0, 3}));

    // Visibility outranks size: a small VISIBLE limit beats a large BLURRED one.
    StsFrame f{"x.jpg", {{"BLURRED", 500, 500, 0, 0, "SPEED_LIMIT", "80_SIGN"},
                         {"VISIBLE", 11, 11, 10, 10, "SPEED_LIMIT", "50_SIGN"}}};
    EXPECT_EQ(sts_frame_label(f), 1);
    // Equal visibility and area: the first listed wins (stable order).
    StsFrame g{"y.jpg", {{"VISIBLE", 10, 10, 0, 0, "SPEED_LIMIT", "70_SIGN"},
                         {"VISIBLE", 10, 10, 0, 0, "SPEED_LIMIT", "50_SIGN"}}};
    EXPECT_EQ(sts_frame_label(g), 2);
}

TEST(Sts, SplitReadListsKeptFramesInFileOrder) {
    TempDir dir;
    fixture_write(dir.path);
    auto train = sts_split_read(dir.path.string(), "train");
    ASSERT_EQ(train.size(), 4u);
    EXPECT_EQ(train[0].path, (dir.path / "Set1/f0.jpg").string());
    EXPECT_EQ(fs::path(train[3].path).filename(), "f5.jpg");
    std::vector<int> labels;
    for (const auto& f : train) labels.push_back(f.label);
    EXPECT_EQ(labels, (std::vector<int>{2, 0, 0, 3}));
    auto test = sts_split_read(dir.path.string(), "test");
    ASSERT_EQ(test.size(), 2u);
    EXPECT_EQ(test[0].label, 1);
    EXPECT_EQ(test[1].label, 0);
}

TEST(Sts, MalformedLinesNameFileAndLine) {
    TempDir dir;
    const std::string path = dir / "annotations.txt";
    auto expect_error = [&](const std::string& text, const std::string& line_tag, const std::string& what) {
        text_write(path, text);
        std::string msg = error_of([&] { sts_annotations_read(path); });
        EXPECT_NE(msg.find(path + ":" + line_tag), std::string::npos) << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
    };
    expect_error("a.jpg:\n\nb.jpg VISIBLE, 1, 1, 0, 0, SPEED_LIMIT, 50_SIGN;\n", "3", "':'");
    expect_error("a.jpg:VISIBLE, 1, 1, 0, 0, SPEED_LIMIT;\n", "1", "fields");
    expect_error("a.jpg:\r\nb.jpg:SHINY, 1, 1, 0, 0, SPEED_LIMIT, 50_SIGN;\r\n", "2", "SHINY");
    expect_error("a.jpg:VISIBLE, x, 1, 0, 0, SPEED_LIMIT, 50_SIGN;\n", "1", "not a number");
    std::string missing = error_of([&] { sts_annotations_read(dir / "nope.txt"); });
    EXPECT_NE(missing.find(dir / "nope.txt"), std::string::npos) << missing;
}

TEST(Sts, MissingFoldersAndBadConfigsAreNamed) {
    TempDir dir;
    fixture_write(dir.path, /*with_set2=*/false);
    Config cfg = sts_config(dir.path);
    EXPECT_EQ(sts_dataset_make(cfg, "train")->size(), 4);
    std::string msg = error_of([&] { sts_dataset_make(cfg, "test"); });
    EXPECT_NE(msg.find((dir.path / "Set2").string()), std::string::npos) << msg;

    fs::remove(dir.path / "Set1/annotations.txt");
    msg = error_of([&] { sts_dataset_make(cfg, "train"); });
    EXPECT_NE(msg.find((dir.path / "Set1/annotations.txt").string()), std::string::npos) << msg;

    Config grey = sts_config(dir.path);
    grey.model.n_chan_in = 1;
    EXPECT_THROW(sts_dataset_make(grey, "train"), ConfigError);
    EXPECT_NE(error_of([&] { sts_dataset_make(grey, "train"); }).find("'n_chan_in'"), std::string::npos);
    Config sigmoid_only = sts_config(dir.path);
    sigmoid_only.model.tasks = {Task{0, "sign", ActFn::sigmoid, Metric::multilabel_accuracy}};
    EXPECT_NE(error_of([&] { sts_dataset_make(sigmoid_only, "train"); }).find("'tasks'"), std::string::npos);
    Config classes = sts_config(dir.path);
    classes.model.n_class = 10;
    EXPECT_NE(error_of([&] { sts_dataset_make(classes, "train"); }).find("'n_class'"), std::string::npos);
    Config wrong_n = sts_config(dir.path);
    wrong_n.data.N = 192;
    EXPECT_NE(error_of([&] { sts_dataset_make(wrong_n, "train"); }).find("'N'"), std::string::npos);
}

TEST(Sts, TestSplitIsResizedNormalisedAndDeterministic) {
    TempDir dir;
    fixture_write(dir.path);
    auto data = sts_dataset_make(sts_config(dir.path), "test");
    ASSERT_EQ(data->size(), 2);
    Example a = data->get(0), again = data->get(0);
    EXPECT_EQ(a.name, (dir.path / "Set2/a.jpg").string());
    EXPECT_EQ(a.source->size(), 12);  // 120x160 in 40x40 patches
    EXPECT_EQ(a.source->patch_shape(), (std::vector<int64_t>{3, 40, 40}));
    ASSERT_EQ(a.targets.size(), 1u);
    EXPECT_EQ(a.targets[0].dim(), 0);
    EXPECT_EQ(a.targets[0].scalar_type(), torch::kInt64);
    EXPECT_EQ(a.targets[0].item<int64_t>(), 1);
    EXPECT_TRUE(torch::equal(all_patches(a), all_patches(again)));

    // The flat frame: after resizing every pixel is its colour, ImageNet-normalised.
    Example b = data->get(1);
    EXPECT_EQ(b.targets[0].item<int64_t>(), 0);
    auto p = all_patches(b);  // [12, 3, 40, 40]
    const float rgb[3] = {200, 100, 50}, mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; ++c) {
        auto ch = p.select(1, c);
        const float want = (rgb[c] / 255.0f - mean[c]) / sd[c];
        EXPECT_NEAR(ch.min().item<float>(), want, 0.1f) << c;
        EXPECT_NEAR(ch.max().item<float>(), want, 0.1f) << c;
    }
    EXPECT_THROW(data->get(2), std::out_of_range);
}

TEST(Sts, TrainSplitAugmentsFreshlyEachGet) {
    TempDir dir;
    fixture_write(dir.path);
    Config cfg = sts_config(dir.path);
    auto data = sts_dataset_make(cfg, "train");
    ASSERT_EQ(data->size(), 4);
    Example first = data->get(0), second = data->get(0);
    EXPECT_EQ(first.targets[0].item<int64_t>(), 2);
    EXPECT_EQ(first.source->size(), 12);
    auto x = all_patches(first), y = all_patches(second);
    EXPECT_EQ(x.sizes(), (std::vector<int64_t>{12, 3, 40, 40}));
    EXPECT_FALSE(torch::equal(x, y));
    EXPECT_TRUE(torch::isfinite(x).all().item<bool>());
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
    // Pixels stay within the normalised image of [0, 255].
    EXPECT_GE(x.min().item<float>(), -0.485f / 0.229f - 1e-4f);
    EXPECT_LE(x.max().item<float>(), (1 - 0.406f) / 0.225f + 1e-4f);

    // Same seed, same sequence of augmentations; another seed, another one.
    auto replay = sts_dataset_make(cfg, "train");
    EXPECT_TRUE(torch::equal(all_patches(replay->get(0)), x));
    cfg.seed = 4;
    EXPECT_FALSE(torch::equal(all_patches(sts_dataset_make(cfg, "train")->get(0)), x));

    // The last kept frame is f5: two visible limits, the larger (80) wins.
    EXPECT_EQ(data->get(3).targets[0].item<int64_t>(), 3);
}

TEST(Sts, CorruptFrameIsNamed) {
    TempDir dir;
    fixture_write(dir.path);
    text_write(dir.path / "Set2/a.jpg", "not a jpeg");
    auto data = sts_dataset_make(sts_config(dir.path), "test");
    std::string msg = error_of([&] { data->get(0); });
    EXPECT_NE(msg.find((dir.path / "Set2/a.jpg").string()), std::string::npos) << msg;
    fs::remove(dir.path / "Set2/b.jpg");
    msg = error_of([&] { data->get(1); });
    EXPECT_NE(msg.find((dir.path / "Set2/b.jpg").string()), std::string::npos) << msg;
}
