// Megapixel MNIST: generator determinism, label correctness recomputed from the stored placements,
// pixels of the placed digits, layout rules, the labels file. (The data set over a generated
// folder: megapixel_mnist_dataset_test.cpp.)
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "test_support.h"
#include "data/test_data.h"
#include "ips/image_io.h"
#include "ips/megapixel_mnist.h"

namespace fs = std::filesystem;
using namespace ips;

namespace {

using test::fashion_digits;
using test::mnist_small_generate;
using test::mnist_small_options;
using test::TempDir;

std::string bytes_read(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

}  // namespace

TEST(MegapixelMnist, SameSeedSameBytesAnyThreadCount) {
    TempDir a, b, c;
    auto opt = mnist_small_options(a.path);
    mnist_small_generate(opt);
    opt.out = b.path.string();
    opt.threads = 1;
    mnist_small_generate(opt);
    for (const std::string split : {"train", "test"}) {
        auto records = megapixel_mnist_labels_read((a.path / split / "labels.csv").string());
        ASSERT_EQ(records.size(), split == "train" ? 6u : 3u);
        EXPECT_EQ(bytes_read(a.path / split / "labels.csv"), bytes_read(b.path / split / "labels.csv"));
        for (const auto& r : records)
            EXPECT_EQ(bytes_read(a.path / split / r.file), bytes_read(b.path / split / r.file)) << r.file;
    }
    EXPECT_EQ(bytes_read(a.path / "meta.json"), bytes_read(b.path / "meta.json"));

    mnist_small_generate(mnist_small_options(c.path, 8));
    EXPECT_NE(bytes_read(a.path / "train/labels.csv"), bytes_read(c.path / "train/labels.csv"));
    EXPECT_FALSE(torch::equal(image_read((a.path / "train/00000.png").string(), 1),
                              image_read((c.path / "train/00000.png").string(), 1)));
    // Train and test images with the same index differ too (split is part of the seed).
    EXPECT_FALSE(torch::equal(image_read((a.path / "train/00000.png").string(), 1),
                              image_read((a.path / "test/00000.png").string(), 1)));
}

TEST(MegapixelMnist, LabelsFollowFromPlacementsAndDigitsAreInTheImage) {
    TempDir dir;
    auto opt = mnist_small_options(dir.path);
    opt.n_train = 12;
    mnist_small_generate(opt);
    for (const std::string split : {"train", "test"}) {
        const DigitSet& set = fashion_digits(split);
        for (const auto& r : megapixel_mnist_labels_read((dir.path / split / "labels.csv").string())) {
            ASSERT_EQ(r.digits.size(), 5u);
            torch::Tensor image = image_read((dir.path / split / r.file).string(), 1);  // [1, H, W]
            ASSERT_EQ(image.sizes(), (std::vector<int64_t>{1, 160, 200}));
            std::array<int, 10> count{};
            int64_t max_label = -1, top_label = -1, top_y = INT64_MAX;
            for (size_t k = 0; k < r.digits.size(); ++k) {
                const auto& d = r.digits[k];
                ++count[d.label];
                max_label = std::max(max_label, d.label);
                if (d.y < top_y) top_y = d.y, top_label = d.label;
                EXPECT_EQ(set.labels[d.index].item<int64_t>(), d.label);
                EXPECT_EQ(d.label == r.majority, k < 3) << r.file << " digit " << k;
                // Painting is max: each digit pixel shows at least at its own value.
                ASSERT_GE(d.x, 0);
                ASSERT_GE(d.y, 0);
                ASSERT_LE(d.x + 28, 200);
                ASSERT_LE(d.y + 28, 160);
                auto box = image[0].slice(0, d.y, d.y + 28).slice(1, d.x, d.x + 28);
                EXPECT_TRUE(torch::all(box >= set.images[d.index]).item<bool>()) << r.file << " digit " << k;
                for (size_t j = 0; j < k; ++j) {  // disjoint boxes, distinct top edges
                    const auto& e = r.digits[j];
                    bool overlap = d.x < e.x + 28 && e.x < d.x + 28 && d.y < e.y + 28 && e.y < d.y + 28;
                    EXPECT_FALSE(overlap) << r.file;
                    EXPECT_NE(d.y, e.y) << r.file;
                }
            }
            EXPECT_EQ(count[r.majority], 3) << r.file;
            EXPECT_EQ(r.max, max_label) << r.file;
            EXPECT_EQ(r.top, top_label) << r.file;
            for (int c = 0; c < 10; ++c) EXPECT_EQ(r.multi[c], count[c] > 0 ? 1 : 0) << r.file << " class " << c;
            // Outside the digit boxes only noise shows: black or a grey level in [0.8, 1.0].
            auto noise = image[0].clone();
            for (const auto& d : r.digits) noise.slice(0, d.y, d.y + 28).slice(1, d.x, d.x + 28).zero_();
            auto lit = noise.masked_select(noise > 0);
            ASSERT_GT(lit.numel(), 0) << r.file;
            EXPECT_GE(lit.min().item<int>(), 204) << r.file;
        }
    }
}

TEST(MegapixelMnist, WithoutNoiseTheImageIsExactlyTheDigits) {
    TempDir dir;
    auto opt = mnist_small_options(dir.path);
    opt.n_noise = 0;
    mnist_small_generate(opt);
    for (const auto& r : megapixel_mnist_labels_read((dir.path / "train/labels.csv").string())) {
        torch::Tensor image = image_read((dir.path / "train" / r.file).string(), 1)[0];  // [H, W]
        auto expect = torch::zeros_like(image);
        for (const auto& d : r.digits)
            expect.slice(0, d.y, d.y + 28).slice(1, d.x, d.x + 28).copy_(fashion_digits("train").images[d.index]);
        EXPECT_TRUE(torch::equal(image, expect)) << r.file;
    }
}

TEST(MegapixelMnist, RenderIsAFunctionOfSeedSplitIndex) {
    MegapixelMnistOptions opt;
    opt.width = opt.height = 120;
    DigitPool pool = digit_pool_make(fashion_digits("train"), "fashion");
    std::vector<uint8_t> a, b, c;
    auto ra = megapixel_mnist_render(opt, pool, "train", 5, a);
    megapixel_mnist_render(opt, pool, "train", 4, c);  // other images in between change nothing
    auto rb = megapixel_mnist_render(opt, pool, "train", 5, b);
    EXPECT_EQ(a, b);
    EXPECT_EQ(ra.digits[0].x, rb.digits[0].x);
    EXPECT_NE(a, c);
    EXPECT_EQ(a.size(), 120u * 120u);
}

TEST(MegapixelMnist, RejectsTooSmallCanvasAndEmptyClass) {
    TempDir dir;
    auto opt = mnist_small_options(dir.path);
    opt.width = 60;
    EXPECT_THROW(mnist_small_generate(opt), std::invalid_argument);
    DigitSet no_sevens{fashion_digits("train").images, fashion_digits("train").labels.clone()};
    no_sevens.labels.masked_fill_(no_sevens.labels == 7, 6);
    EXPECT_THROW(digit_pool_make(no_sevens, "x"), std::runtime_error);
}

TEST(MegapixelMnist, GeneratesFromAnIdxSourceFolder) {
    TempDir src, out;
    auto idx_write = [&](const std::string& name, const torch::Tensor& t /*uint8*/) {
        std::string bytes = {0, 0, 8, static_cast<char>(t.dim())};
        for (int64_t d : t.sizes())
            for (int s = 24; s >= 0; s -= 8) bytes.push_back(static_cast<char>((d >> s) & 0xff));
        auto c = t.contiguous();
        bytes.append(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
        std::ofstream(src.path / name, std::ios::binary) << bytes;
    };
    for (const std::string split : {"train", "test"}) {
        const std::string prefix = split == "train" ? "train" : "t10k";
        idx_write(prefix + "-images-idx3-ubyte", fashion_digits(split).images.slice(0, 0, 300));
        idx_write(prefix + "-labels-idx1-ubyte", fashion_digits(split).labels.slice(0, 0, 300).to(torch::kUInt8));
    }
    auto opt = mnist_small_options(out.path);
    opt.digits = src.path.string();
    megapixel_mnist_generate(opt);
    std::ifstream meta(out.path / "meta.json");
    std::stringstream text;
    text << meta.rdbuf();
    EXPECT_NE(text.str().find("\"digits_format\": \"idx\""), std::string::npos) << text.str();
    EXPECT_EQ(megapixel_mnist_labels_read((out.path / "test/labels.csv").string()).size(), 3u);
}

TEST(MegapixelMnist, BadLabelsFileNamesFileAndLine) {
    TempDir dir;
    mnist_small_generate(mnist_small_options(dir.path));
    const fs::path labels = dir.path / "train/labels.csv";
    std::string text = bytes_read(labels);
    text.insert(text.find('\n', text.find('\n') + 1) + 1, "00099.png,1,2,3,0101\n");
    std::ofstream(labels, std::ios::binary) << text;
    try {
        megapixel_mnist_labels_read(labels.string());
        FAIL() << "no error for a short row";
    } catch (const std::runtime_error& e) {
        EXPECT_NE(std::string(e.what()).find(labels.string() + ":3:"), std::string::npos) << e.what();
    }
}

#ifdef IPS_BINARY
TEST(MegapixelMnistCli, DataCommandWritesADataSet) {
    TempDir src, out;
    // The CLI takes a source folder; hand it the Fashion-MNIST IDX files through links.
    for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"})
        fs::create_symlink(fs::path(test::fashion_mnist_dir()) / name, src.path / name);
    const std::string cmd = std::string(IPS_BINARY) + " data megapixel-mnist --digits " + src.path.string() +
                            " --out " + out.path.string() +
                            " --width 100 --height 90 --n-train 3 --n-test 2 --n-noise 5 --seed 3 2>&1";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    EXPECT_EQ(megapixel_mnist_labels_read((out.path / "train/labels.csv").string()).size(), 3u);
    EXPECT_EQ(megapixel_mnist_labels_read((out.path / "test/labels.csv").string()).size(), 2u);
    EXPECT_EQ(image_read((out.path / "test/00001.png").string(), 1).sizes(), (std::vector<int64_t>{1, 90, 100}));
    EXPECT_TRUE(fs::exists(out.path / "meta.json"));
}
#endif
