// ips bench: the training step or the inference step timed on synthetic inputs of a config's shapes.
#include <cstdio>

#include "command.h"
#include "ips/bench.h"

namespace ips::cli {
namespace {

struct BenchArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    DistArgs dist;
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
    dist_args_add(sub, a->dist);
    sub->callback([a] {
        dist_args_launch(a->dist);
        const Config cfg = config_args_load(a->config);
        a->opt.device = runtime_args_apply(a->runtime);
        a->opt.dist = dist_args_join(a->dist, a->opt.device, config_to_yaml(cfg));
        const BenchResult r = bench_run(cfg, a->opt);
        if (a->opt.dist && dist_rank(*a->opt.dist) != 0) return;
        std::printf("%s %s %s: B %lld, N %lld, M %lld, I %lld: %.1f ms/batch, %.2f img/s, peak %.3f GiB (%s)",
                    r.mode.c_str(), r.device.c_str(), r.precision.c_str(), static_cast<long long>(r.B),
                    static_cast<long long>(r.N), static_cast<long long>(r.M), static_cast<long long>(r.I),
                    r.ms_per_batch, r.img_per_s, r.peak_mem_gib, r.peak_mem_kind.c_str());
        if (a->opt.dist) std::printf(", %d ranks, %.1f %% in collectives", r.world_size, 100.0 * r.comm_share);
        std::printf("\n");
        if (a->json) std::printf("%s\n", bench_to_json(r).c_str());
    });
}

struct CommArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    DistArgs dist;
    int iters = 10;
    std::vector<double> bucket_mib{1, 25};
    bool json = false;
};

void bench_comm_setup(CLI::App* sub) {
    auto a = std::make_shared<CommArgs>();
    config_args_add(sub, a->config);
    runtime_args_add(sub, a->runtime);
    dist_args_add(sub, a->dist);
    sub->add_option("--iters", a->iters, "timed all-reduces (median reported)");
    sub->add_option("--bucket-mib", a->bucket_mib, "bucket sizes to time, MiB (default 1 25)");
    sub->add_flag("--json", a->json, "print one JSON object on the last line");
    sub->callback([a] {
        dist_args_launch(a->dist);
        const Config cfg = config_args_load(a->config);
        const torch::Device device = runtime_args_apply(a->runtime);
        auto group = dist_args_join(a->dist, device, config_to_yaml(cfg));
        if (!group)
            throw std::runtime_error("bench-comm times collectives: start it with --nproc-per-node K or a launcher");
        const CommBenchResult r = bench_comm_run(cfg, *group, device, a->iters, a->bucket_mib);
        dist_barrier(*group);
        if (dist_rank(*group) != 0) return;
        std::printf("gradient all-reduce over %d ranks: %lld parameters, %.2f MiB of gradients\n", r.world_size,
                    static_cast<long long>(r.parameters), r.gradient_mib);
        for (const auto& [mib, ms] : r.bucketed_ms) std::printf("  buckets of %g MiB: %.2f ms/step\n", mib, ms);
        std::printf("  one all-reduce per parameter: %.2f ms/step\n", r.per_tensor_ms);
        if (a->json) std::printf("%s\n", bench_comm_to_json(r).c_str());
    });
}

const CommandRegistration kBench{
    {"bench", "time training steps or inference on synthetic inputs of a config's shapes", bench_setup, 90}};
const CommandRegistration kBenchComm{
    {"bench-comm", "time the gradient all-reduce of a config's model: buckets against one call per parameter",
     bench_comm_setup, 91}};

}  // namespace
}  // namespace ips::cli
