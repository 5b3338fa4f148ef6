#include "command.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "ips/runtime.h"

namespace ips::cli {
namespace {

std::vector<CommandSpec>& registry() {
    static std::vector<CommandSpec> table;  // filled during static initialisation
    return table;
}

}  // namespace

CommandRegistration::CommandRegistration(CommandSpec spec) { registry().push_back(spec); }

std::vector<CommandSpec> command_table() {
    auto table = registry();
    std::stable_sort(table.begin(), table.end(), [](const CommandSpec& a, const CommandSpec& b) { return a.order < b.order; });
    return table;
}

void config_args_add(CLI::App* sub, ConfigArgs& a, const char* what) {
    sub->add_option("config", a.path, what)->required();
    // One KEY=VALUE per --set: a vector option would otherwise take the positional arguments after
    // it too ("--set M=8 IMAGE" swallowing IMAGE), and a path without '=' is no override.
    sub->add_option("--set", a.sets, "override a config key: --set KEY=VALUE (repeatable)")
        ->allow_extra_args(false)
        ->check(CLI::Validator(
            [](std::string& v) {
                const auto eq = v.find('=');
                return eq == std::string::npos || eq == 0 ? "--set takes one KEY=VALUE, not '" + v + "'" : std::string();
            },
            "KEY=VALUE"));
    sub->add_option("--seed", a.seed, "random seed (overrides the config's seed)");
}

Config config_args_load(const ConfigArgs& a) {
    std::vector<std::string> sets = a.sets;
    if (a.seed >= 0) sets.push_back("seed=" + std::to_string(a.seed));
    std::vector<std::string> ignored;
    Config cfg = config_load(a.path, sets, &ignored);
    const char* rank = std::getenv("RANK");
    if (!ignored.empty() && (!rank || std::string(rank) == "0")) {
        std::string list;
        for (const auto& k : ignored) list += (list.empty() ? "" : ", ") + k;
        std::fprintf(stderr, "note: %s: keys of the reference implementation ignored here: %s\n", a.path.c_str(),
                     list.c_str());
    }
    return cfg;
}

void runtime_args_add(CLI::App* sub, RuntimeArgs& a, bool with_device) {
    if (with_device)
        sub->add_option("--device", a.device, "auto | cpu | cuda (auto: CUDA when available)")
            ->check(CLI::IsMember({"auto", "cpu", "cuda"}));
    sub->add_option("--threads", a.threads, "CPU threads (default: all cores)");
}

torch::Device runtime_args_apply(const RuntimeArgs& a) {
    runtime_configure(a.threads);
    if (a.device == "cpu") return torch::kCPU;
    const bool cuda = a.device == "cuda" || (a.device == "auto" && torch::cuda::is_available());
    if (!cuda) return torch::kCPU;
    if (!torch::cuda::is_available())
        throw std::runtime_error("--device cuda: no CUDA device is available to this libtorch build");
    const DistEnv env = dist_env_read();
    if (!env.launched) return torch::kCUDA;
    if (env.local_rank >= static_cast<int>(torch::cuda::device_count()))
        throw std::runtime_error("LOCAL_RANK=" + std::to_string(env.local_rank) + " but only " +
                                 std::to_string(torch::cuda::device_count()) + " CUDA device(s) are visible");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(env.local_rank));
}

namespace {
std::vector<std::string>& args_store() {
    static std::vector<std::string> args;
    return args;
}
}  // namespace

void process_args_set(int argc, char** argv) { args_store().assign(argv, argv + argc); }
const std::vector<std::string>& process_args() { return args_store(); }

}  // namespace ips::cli
