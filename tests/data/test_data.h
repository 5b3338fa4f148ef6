// Data the data tests read: a small Megapixel MNIST generated from real Fashion-MNIST digits, and
// configs over folders of feature bags.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "test_support.h"
#include "ips/config.h"
#include "ips/megapixel_mnist.h"

namespace ips::test {

// Real digits, loaded once: the 10,000 Fashion-MNIST test images, halved into our train/test.
inline const DigitSet& fashion_digits(const std::string& split) {
    static const DigitSet all = mnist_digits_load(fashion_mnist_dir(), "test");
    static const DigitSet train{all.images.slice(0, 0, 5000), all.labels.slice(0, 0, 5000)};
    static const DigitSet test{all.images.slice(0, 5000), all.labels.slice(0, 5000)};
    return split == "train" ? train : test;
}

// 6 + 3 images of 200 x 160: a 4 x 5 grid of 40-pixel patches, generated in about a second.
inline MegapixelMnistOptions mnist_small_options(const std::filesystem::path& out, uint64_t seed = 7) {
    MegapixelMnistOptions opt;
    opt.out = out.string();
    opt.width = 200;
    opt.height = 160;
    opt.n_train = 6;
    opt.n_test = 3;
    opt.seed = seed;
    opt.threads = 2;
    return opt;
}

inline void mnist_small_generate(const MegapixelMnistOptions& opt) {
    megapixel_mnist_generate(opt, fashion_digits("train"), fashion_digits("test"), "idx");
}

// Feature bags of `n_chan_in` features under `dir`, one two-class task scored by AUC.
inline Config bag_dataset_config(const std::string& dataset, const std::filesystem::path& dir, int64_t n_chan_in,
                                 const std::string& task) {
    Config c;
    c.data.dataset = dataset;
    c.data.data_dir = dir.string();
    c.model.is_image = false;
    c.model.n_chan_in = n_chan_in;
    c.model.n_class = 2;
    c.model.tasks = {Task{0, task, ActFn::softmax, Metric::auc}};
    return c;
}

}  // namespace ips::test
