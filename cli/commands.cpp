#include "commands.h"

#include <cstdio>
#include <iostream>

#include "ips/checkpoint.h"
#include "ips/pretrain.h"
#include "ips/train.h"

namespace ips::cli {

namespace {

struct TrainArgs {
    std::string config;
    bool resume = false;
    int stop_after = -1;
    bool quiet = false;
    std::string weights;
};

std::string metrics_summary(const Config& cfg, const EvalResult& r) {
    std::string s = "test loss " + std::to_string(r.loss);
    for (size_t t = 0; t < cfg.tasks.size() && t < r.task_metric.size(); ++t) {
        const auto& task = cfg.tasks[t];
        const char* m = metric_name(task.metric);
        char buf[128];
        std::snprintf(buf, sizeof buf, ", %s %s %.4f", task.name.c_str(), m, r.task_metric[t]);
        s += buf;
    }
    return s;
}

}  // namespace

void cmd_train_setup(CLI::App* sub, GlobalOptions& g) {
    auto args = std::make_shared<TrainArgs>();
    sub->add_option("config", args->config, "YAML config")->required();
    sub->add_flag("--resume", args->resume, "continue from OUT/last.pt");
    sub->add_option("--stop-after", args->stop_after, "end after this epoch (the schedule still spans n_epoch)");
    sub->add_flag("--quiet", args->quiet, "no progress bar");
    sub->add_option("--weights", args->weights,
                    "start from these weights: an ips checkpoint or a PyTorch state dict in the reference layout");
    global_options_add(sub, g);
    sub->callback([args, &g] {
        Config cfg = config_for_command(args->config, g);
        TrainOptions opt;
        opt.device = global_options_apply(g);
        opt.out_dir = g.out.empty() ? "runs/" + std::filesystem::path(args->config).stem().string() : g.out;
        opt.resume = args->resume;
        opt.stop_after_epoch = args->stop_after;
        opt.progress = !args->quiet;
        opt.init_weights = args->weights;
        if (opt.resume && !opt.init_weights.empty())
            std::fprintf(stderr, "note: --resume continues from last.pt; --weights %s is not used\n", args->weights.c_str());
        std::fprintf(stderr, "training %s on %s, output in %s\n", args->config.c_str(), opt.device.str().c_str(),
                     opt.out_dir.c_str());
        auto records = train_run(cfg, opt);
        if (!records.empty())
            std::printf("epoch %d: train loss %.4f, %s\n", records.back().epoch, records.back().train_loss,
                        metrics_summary(cfg, records.back().test).c_str());
    });
}

void cmd_eval_setup(CLI::App* sub, GlobalOptions& g) {
    auto config = std::make_shared<std::string>();
    auto checkpoint = std::make_shared<std::string>();
    sub->add_option("config", *config, "YAML config")->required();
    sub->add_option("--weights,--checkpoint", *checkpoint, "ips checkpoint or PyTorch state dict (reference layout)")->required();
    global_options_add(sub, g);
    sub->callback([config, checkpoint, &g] {
        Config cfg = config_for_command(*config, g);
        torch::Device device = global_options_apply(g);
        IPSNet net = net_make(cfg, /*initial_weights=*/false);
        weights_load(*checkpoint, net);
        net_to(net, device);
        auto data = dataset_open(cfg, "test");
        EvalResult r = evaluate(net, cfg, *data, device, true);
        std::printf("%s\n", metrics_summary(cfg, r).c_str());
    });
}

void cmd_pretrain_setup(CLI::App* sub, GlobalOptions& g) {
    auto config = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    auto opt = std::make_shared<PretrainOptions>();
    sub->add_option("config", *config, "YAML config (its data_dir, patch_size and encoder)")->required();
    sub->add_option("--weights-out", *out, "where to write the trunk (torchvision layout)")->required();
    sub->add_option("--steps", opt->steps, "optimizer steps");
    sub->add_option("--batch", opt->batch, "crops per step");
    sub->add_option("--lr", opt->lr, "peak learning rate (cosine decay)");
    global_options_add(sub, g);
    sub->callback([config, out, opt, &g] {
        Config cfg = config_for_command(*config, g);
        if (cfg.dataset != "megapixel_mnist")
            throw ConfigError("config key 'dataset': pre-training reads digit positions of megapixel_mnist data");
        opt->device = global_options_apply(g);
        PretrainResult r = encoder_pretrain_megapixel_mnist(cfg, *opt, *out);
        std::printf("pre-trained encoder: %d steps in %.1f s, crop accuracy on the test split %.4f, written to %s\n",
                    r.steps, r.seconds, r.test_accuracy, out->c_str());
    });
}

}  // namespace ips::cli
