// ips pretrain: supervised pre-training of the patch encoder on labelled crops.
#include <cstdio>

#include "command.h"
#include "ips/pretrain.h"

namespace ips::cli {
namespace {

struct PretrainArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    std::string out;
    PretrainOptions opt;
};

void pretrain_setup(CLI::App* sub) {
    auto a = std::make_shared<PretrainArgs>();
    config_args_add(sub, a->config, "YAML config (its data_dir, patch_size and encoder)");
    runtime_args_add(sub, a->runtime);
    sub->add_option("--weights-out", a->out, "where to write the trunk (torchvision layout)")->required();
    sub->add_option("--steps", a->opt.steps, "optimizer steps");
    sub->add_option("--batch", a->opt.batch, "crops per step");
    sub->add_option("--lr", a->opt.lr, "peak learning rate (cosine decay)");
    sub->callback([a] {
        const Config cfg = config_args_load(a->config);
        a->opt.device = runtime_args_apply(a->runtime);
        const PretrainResult r = encoder_pretrain_megapixel_mnist(cfg, a->opt, a->out);
        std::printf("pre-trained encoder: %d steps in %.1f s, crop accuracy on the test split %.4f, written to %s\n",
                    r.steps, r.seconds, r.test_accuracy, a->out.c_str());
    });
}

const CommandRegistration kPretrain{
    {"pretrain", "pre-train the patch encoder on labelled crops (Megapixel MNIST digit positions)", pretrain_setup, 40}};

}  // namespace
}  // namespace ips::cli
