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
#include "ips/distributed.h"

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
// Applies --threads and resolves --device ("auto" = CUDA when available). A launched worker
// (RANK set) takes the CUDA device of its LOCAL_RANK.
torch::Device runtime_args_apply(const RuntimeArgs& a);

// The command line as main() received it (the launcher restarts it for each worker).
void process_args_set(int argc, char** argv);
const std::vector<std::string>& process_args();

// Thrown by a launcher once its workers have ended: main() exits with `code`.
struct WorkersEnded {
    int code;
};

// Options of a job over several processes (docs/DISTRIBUTED.md): --nproc-per-node,
// --dist-backend, --dist-timeout. Launchers such as torchrun set the environment instead.
struct DistArgs {
    int nproc_per_node = 0;  // 0: not the launcher
    std::string backend = "auto";
    double timeout_s = 300;
};
void dist_args_add(CLI::App* sub, DistArgs& a);
// With --nproc-per-node K in a process that is not a worker: runs the K workers and throws
// WorkersEnded. Otherwise returns.
void dist_args_launch(const DistArgs& a);
// Joins the job of the torchrun environment (null for a plain single process). fingerprint:
// what every rank must agree on (the resolved config and the command line's job options).
DistGroupPtr dist_args_join(const DistArgs& a, const torch::Device& device, const std::string& fingerprint);

}  // namespace ips::cli
