// ips bench: the training step or the inference step timed on synthetic inputs of a config's shapes.
#include <cstdio>

#include "command.h"
#include "ips/bench.h"

namespace ips::cli {
namespace {

struct BenchArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    BenchOptions opt;
    bool json = false;
};

void bench_setup(CLI::App* sub) {
    auto a = std::make_shared<BenchArgs>();
    config_args_add(sub, a->config);
    runtime_args_add(sub, a->runtime);
    sub->add_option("--mode", a->opt.mode, "train | eval")
        ->transform(CLI::CheckedTransformer(std::map<std::string, BenchMode>{{"train", BenchMode::train},
                                                                             {"eval", BenchMode::eval}}));
    sub->add_option("--iters", a->opt.iters, "timed batches (median reported)");
    sub->add_option("--warmup", a->opt.warmup, "untimed batches first");
    sub->add_option("--bag-dtype", a->opt.bag_dtype, "feature bags: float16 | float32 storage of the synthetic bag")
        ->transform(CLI::CheckedTransformer(std::map<std::string, torch::ScalarType>{{"float16", torch::kHalf},
                                                                                     {"float32", torch::kFloat32}}));
    sub->add_flag("--json", a->json, "print one JSON object on the last line");
    sub->callback([a] {
        const Config cfg = config_args_load(a->config);
        a->opt.device = runtime_args_apply(a->runtime);
        const BenchResult r = bench_run(cfg, a->opt);
        std::printf("%s %s %s: B %lld, N %lld, M %lld, I %lld: %.1f ms/batch, %.2f img/s, peak %.3f GiB (%s)\n",
                    r.mode.c_str(), r.device.c_str(), r.precision.c_str(), static_cast<long long>(r.B),
                    static_cast<long long>(r.N), static_cast<long long>(r.M), static_cast<long long>(r.I),
                    r.ms_per_batch, r.img_per_s, r.peak_mem_gib, r.peak_mem_kind.c_str());
        if (a->json) std::printf("%s\n", bench_to_json(r).c_str());
    });
}

const CommandRegistration kBench{
    {"bench", "time training steps or inference on synthetic inputs of a config's shapes", bench_setup, 90}};

}  // namespace
}  // namespace ips::cli
