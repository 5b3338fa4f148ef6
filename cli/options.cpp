// Options every subcommand shares (commands.h).
#include <cstdio>

#include "commands.h"
#include "ips/runtime.h"

namespace ips::cli {

void global_options_add(CLI::App* sub, GlobalOptions& g) {
    sub->add_option("--device", g.device, "auto | cpu | cuda (auto: CUDA when available)")
        ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    sub->add_option("--threads", g.threads, "CPU threads (default: all cores)");
    sub->add_option("--out", g.out, "output folder");
    sub->add_option("--seed", g.seed, "random seed (overrides the config's seed)");
    sub->add_option("--set", g.sets, "override a config key: --set KEY=VALUE (repeatable)");
}

torch::Device global_options_apply(const GlobalOptions& g) {
    runtime_configure(g.threads);
    if (g.device == "cpu") return torch::kCPU;
    if (g.device == "cuda") {
        if (!torch::cuda::is_available())
            throw std::runtime_error("--device cuda: no CUDA device is available to this libtorch build");
        return torch::kCUDA;
    }
    return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

Config config_for_command(const std::string& path, const GlobalOptions& g) {
    std::vector<std::string> sets = g.sets;
    if (g.seed >= 0) sets.push_back("seed=" + std::to_string(g.seed));
    std::vector<std::string> ignored;
    Config cfg = config_load(path, sets, &ignored);
    if (!ignored.empty()) {
        std::string list;
        for (const auto& k : ignored) list += (list.empty() ? "" : ", ") + k;
        std::fprintf(stderr, "note: %s: keys of the reference implementation ignored here: %s\n", path.c_str(),
                     list.c_str());
    }
    return cfg;
}

}  // namespace ips::cli
