// The CLI is a table of subcommands (main.cpp); each one adds its options to its CLI11 sub-app
// and sets a callback. Options shared by every subcommand live in GlobalOptions.
#pragma once

#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ips/config.h"

namespace ips::cli {

struct GlobalOptions {
    std::string device = "auto";        // auto | cpu | cuda
    int threads = 0;                    // 0 = all cores
    std::string out;                    // output folder (subcommand-specific default)
    int64_t seed = -1;                  // -1 = config's seed
    std::vector<std::string> sets;      // --set KEY=VALUE overrides
};

// Adds --device, --threads, --out, --seed, --set to a subcommand.
void global_options_add(CLI::App* sub, GlobalOptions& g);
// Applies --threads and resolves --device ("auto" = CUDA when available).
torch::Device global_options_apply(const GlobalOptions& g);
// Loads CONFIG with --set and --seed applied; reports ignored reference keys once on stderr.
Config config_for_command(const std::string& path, const GlobalOptions& g);

using CommandSetup = void (*)(CLI::App* sub, GlobalOptions& g);
struct CommandSpec {
    const char* name;
    const char* help;
    CommandSetup setup;
};

void cmd_train_setup(CLI::App* sub, GlobalOptions& g);
void cmd_eval_setup(CLI::App* sub, GlobalOptions& g);
void cmd_bench_setup(CLI::App* sub, GlobalOptions& g);
void cmd_predict_setup(CLI::App* sub, GlobalOptions& g);
void cmd_pretrain_setup(CLI::App* sub, GlobalOptions& g);
void cmd_plot_setup(CLI::App* sub, GlobalOptions& g);
void cmd_data_setup(CLI::App* sub, GlobalOptions& g);  // cmd_data.cpp: data set generators
void cmd_tiles_setup(CLI::App* sub, GlobalOptions& g);     // cmd_slides.cpp
void cmd_features_setup(CLI::App* sub, GlobalOptions& g);  // cmd_slides.cpp
void cmd_read_bench_setup(CLI::App* sub, GlobalOptions& g);  // cmd_slides.cpp

}  // namespace ips::cli
