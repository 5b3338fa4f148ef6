// Supervised pre-training of the patch encoder on labelled patches of the training split, so that
// IPS starts from features that already tell digits from noise (as the traffic configuration
// starts from ImageNet weights). For Megapixel MNIST the labels come from the generator's record
// of where each digit was pasted: a crop around a digit is labelled with its class, a crop without
// a digit centre is "background" (class 10).
#pragma once

#include "ips/config.h"

#include <torch/torch.h>

namespace ips {

struct PretrainOptions {
    int steps = 400;
    int batch = 128;
    double lr = 2e-3;
    torch::Device device = torch::kCPU;
    bool progress = true;
};

struct PretrainResult {
    double test_accuracy = 0;  // on crops from the test split
    int steps = 0;
    double seconds = 0;
};

// Trains the config's trunk (+ a linear classifier that is thrown away) on crops of
// cfg.data_dir/train and writes the trunk to `out` as a torchvision-layout state dict
// (conv1, bn1, layer1, ...), the format the `encoder_weights` key reads.
PretrainResult encoder_pretrain_megapixel_mnist(const Config& cfg, const PretrainOptions& opt, const std::string& out);

}  // namespace ips
