// The `ips` command is a table of subcommands. Each file of cli/ holds one family of them: its
// setup functions and, beside them, their table entries (CommandRegistration), so a build that
// leaves a file out (the engine-only build) simply has fewer subcommands. The files parse options
// and print; the work is done by the library.
#pragma once

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ips/config.h"

namespace ips::cli {

// Adds the subcommand's options and callback to `sub`.
using CommandSetup = void (*)(CLI::App* sub);
struct CommandSpec {
    const char* name;
    const char* help;
    CommandSetup setup;
    int order;  // position in `ips --help`
};
// Adds a subcommand to the table; construct one as a static object beside the command's code.
struct CommandRegistration {
    explicit CommandRegistration(CommandSpec spec);
};
// Every registered subcommand, by `order`.
std::vector<CommandSpec> command_table();

// Options that make the config: CONFIG, --set KEY=VALUE (repeatable), --seed.
struct ConfigArgs {
    std::string path;
    std::vector<std::string> sets;
    int64_t seed = -1;  // -1 = the config's seed
};
void config_args_add(CLI::App* sub, ConfigArgs& a, const char* what = "YAML config");
// Loads CONFIG with --set and --seed applied; reports ignored reference keys once on stderr.
Config config_args_load(const ConfigArgs& a);

// Options of the process, not of the run: --device, --threads.
struct RuntimeArgs {
    std::string device = "auto";  // auto | cpu | cuda
    int threads = 0;              // 0 = all cores
};
void runtime_args_add(CLI::App* sub, RuntimeArgs& a, bool with_device = true);
// Applies --threads and resolves --device ("auto" = CUDA when available).
torch::Device runtime_args_apply(const RuntimeArgs& a);

}  // namespace ips::cli
