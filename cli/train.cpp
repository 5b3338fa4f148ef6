// ips train / ips eval: training runs and the evaluation of a checkpoint.
#include <cstdio>
#include <filesystem>

#include "command.h"
#include "ips/checkpoint.h"
#include "ips/runtime.h"
#include "ips/train.h"

namespace ips::cli {
namespace {

struct TrainArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    DistArgs dist;
    std::string out;
    bool resume = false;
    int stop_after = -1;
    bool quiet = false;
    std::string weights;
};

void train_setup(CLI::App* sub) {
    auto a = std::make_shared<TrainArgs>();
    config_args_add(sub, a->config);
    runtime_args_add(sub, a->runtime);
    dist_args_add(sub, a->dist);
    sub->add_option("--out", a->out, "run folder (default runs/<config stem>)");
    sub->add_flag("--resume", a->resume, "continue from OUT/last.pt");
    sub->add_option("--stop-after", a->stop_after, "end after this epoch (the schedule still spans n_epoch)");
    sub->add_flag("--quiet", a->quiet, "no progress bar");
    sub->add_option("--weights", a->weights,
                    "start from these weights: an ips checkpoint or a PyTorch state dict in the reference layout");
    sub->callback([a] {
        dist_args_launch(a->dist);
        const Config cfg = config_args_load(a->config);
        RunOptions opt;
        opt.device = runtime_args_apply(a->runtime);
        opt.out_dir = a->out.empty() ? "runs/" + std::filesystem::path(a->config.path).stem().string() : a->out;
        opt.resume = a->resume;
        opt.stop_after_epoch = a->stop_after;
        opt.progress = !a->quiet;
        opt.init_weights = a->weights;
        // Every rank must train the same thing into the same folder.
        opt.dist = dist_args_join(a->dist, opt.device,
                                  config_to_yaml(cfg) + "out: " + opt.out_dir + "\nresume: " + std::to_string(opt.resume) +
                                      "\nstop_after: " + std::to_string(opt.stop_after_epoch) + "\nweights: " + a->weights);
        const bool speaks = !opt.dist || dist_rank(*opt.dist) == 0;
        if (speaks) {
            if (opt.resume && !opt.init_weights.empty())
                std::fprintf(stderr, "note: --resume continues from last.pt; --weights %s is not used\n", a->weights.c_str());
            std::fprintf(stderr, "%s\n", runtime_versions().c_str());
            std::fprintf(stderr, "training %s on %s%s, output in %s\n", a->config.path.c_str(), opt.device.str().c_str(),
                         opt.dist ? (" x " + std::to_string(dist_world_size(*opt.dist)) + " ranks").c_str() : "",
                         opt.out_dir.c_str());
        }
        const auto records = train_run(cfg, opt);
        if (speaks && !records.empty())
            std::printf("epoch %d: train loss %.4f, %s\n", records.back().epoch, records.back().train_loss,
                        eval_summary(cfg.model.tasks, records.back().test).c_str());
    });
}

struct EvalArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    std::string weights;
};

void eval_setup(CLI::App* sub) {
    auto a = std::make_shared<EvalArgs>();
    config_args_add(sub, a->config);
    runtime_args_add(sub, a->runtime);
    sub->add_option("--weights,--checkpoint", a->weights, "ips checkpoint or PyTorch state dict (reference layout)")
        ->required();
    sub->callback([a] {
        const Config cfg = config_args_load(a->config);
        const torch::Device device = runtime_args_apply(a->runtime);
        IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
        weights_load(a->weights, net);
        net_to(net, device);
        auto data = dataset_open(cfg, "test");
        const EvalResult r = evaluate(net, cfg, *data, device, true);
        std::printf("%s\n", eval_summary(cfg.model.tasks, r).c_str());
    });
}

const CommandRegistration kTrain{{"train", "train a model from a config (progress, metrics.jsonl, checkpoints)", train_setup, 50}};
const CommandRegistration kEval{{"eval", "evaluate a checkpoint on the test split", eval_setup, 60}};

}  // namespace
}  // namespace ips::cli
