// ips: the command-line tool. Subcommands come from one table; each sets itself up (commands.h).
#include <cstdio>

#include "commands.h"

namespace {

const ips::cli::CommandSpec kCommands[] = {
#ifndef IPS_ENGINE_ONLY
    {"data", "generate data sets: ips data megapixel-mnist --digits SRC --out DIR", ips::cli::cmd_data_setup},
    {"tiles", "tissue tiles of slides: coordinates (CSV), thumbnail with mask and tiles (PNG)", ips::cli::cmd_tiles_setup},
    {"features", "embed every tissue tile of slides with a trunk: one HDF5 feature bag per slide", ips::cli::cmd_features_setup},
    {"pretrain", "pre-train the patch encoder on labelled crops (Megapixel MNIST digit positions)", ips::cli::cmd_pretrain_setup},
    {"train", "train a model from a config (progress, metrics.jsonl, checkpoints)", ips::cli::cmd_train_setup},
    {"eval", "evaluate a checkpoint on the test split", ips::cli::cmd_eval_setup},
    {"predict", "class probabilities, selected patches and an attention heat map for images", ips::cli::cmd_predict_setup},
    {"plot", "learning curves of a run: ips plot RUN/metrics.jsonl --out curve.png", ips::cli::cmd_plot_setup},
    {"bench-read", "patches/s and peak memory of reading random tiles from a slide or image", ips::cli::cmd_read_bench_setup},
#endif
    {"bench", "time training steps or inference on synthetic inputs of a config's shapes", ips::cli::cmd_bench_setup},
};

}  // namespace

int main(int argc, char** argv) {
    CLI::App app{"ips: Iterative Patch Selection for images of any size"};
    app.require_subcommand(1);
    ips::cli::GlobalOptions global;
    for (const auto& cmd : kCommands) cmd.setup(app.add_subcommand(cmd.name, cmd.help), global);
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const std::exception& e) {
        // Subcommand callbacks run inside parse(): their errors end here with the message.
        std::fprintf(stderr, "ips: error: %s\n", e.what());
        return 1;
    }
    return 0;
}
