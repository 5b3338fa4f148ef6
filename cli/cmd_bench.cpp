// ips bench: timing of training steps or inference on synthetic inputs of a config's shapes.
#include <cstdio>

#include "commands.h"
#include "ips/bench.h"

namespace ips::cli {

void cmd_bench_setup(CLI::App* sub, GlobalOptions& g) {
    auto config = std::make_shared<std::string>();
    auto opt = std::make_shared<BenchOptions>();
    auto json = std::make_shared<bool>(false);
    sub->add_option("config", *config, "YAML config")->required();
    sub->add_option("--mode", opt->mode, "train | eval")->check(CLI::IsMember({"train", "eval"}));
    sub->add_option("--iters", opt->iters, "timed batches (median reported)");
    sub->add_option("--warmup", opt->warmup, "untimed batches first");
    sub->add_option("--bag-dtype", opt->bag_dtype, "feature bags: float16 | float32 storage of the synthetic bag")
        ->check(CLI::IsMember({"float16", "float32"}));
    sub->add_flag("--json", *json, "print one JSON object on the last line");
    global_options_add(sub, g);
    sub->callback([config, opt, json, &g] {
        Config cfg = config_for_command(*config, g);
        opt->device = global_options_apply(g);
        BenchResult r = bench_run(cfg, *opt);
        std::printf("%s %s %s: B %lld, N %lld, M %lld, I %lld: %.1f ms/batch, %.2f img/s, peak %.3f GiB (%s)\n",
                    r.mode.c_str(), r.device.c_str(), r.precision.c_str(), static_cast<long long>(r.B), static_cast<long long>(r.N),
                    static_cast<long long>(r.M), static_cast<long long>(r.I), r.ms_per_batch, r.img_per_s,
                    r.peak_mem_gib, r.peak_mem_kind.c_str());
        if (*json) std::printf("%s\n", bench_to_json(r).c_str());
    });
}

}  // namespace ips::cli
