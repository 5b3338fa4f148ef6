// torchvision ResNet state dicts (conv1, bn1, layer1..layer4, fc) mapped onto our numbered trunk
// (resnet_trunk_make), in both directions, through the torch.save files of torch_file.h.
#pragma once

#include <torch/torch.h>

#include <string>

namespace ips {

// Loads a torchvision ResNet file (conv1, bn1, layer1..layer4, fc) into our numbered trunk
// (0 conv1, 1 bn1, 4 layer1, 5 layer2, 6 layer3, 7 layer4). fc is ignored, and so are layer3
// and layer4 when n_res_blocks == 2. Strict otherwise: a mismatch (e.g. a 3-channel conv1 into
// a 1-channel trunk) throws std::runtime_error naming the torchvision key and both shapes.
void trunk_load_torchvision(torch::nn::Sequential& trunk, const std::string& path, int n_res_blocks);

// The inverse: writes a trunk built by resnet_trunk_make as a torchvision ResNet state dict
// (without fc), the format trunk_load_torchvision and the `encoder_weights` key read.
void trunk_save_torchvision(torch::nn::Sequential& trunk, const std::string& path);

// torchvision key -> trunk key ("layer1.0.conv1.weight" -> "4.0.conv1.weight"); "" for keys the
// trunk does not hold (fc.*, and layer3/layer4 when n_res_blocks == 2).
std::string trunk_key_from_torchvision(const std::string& key, int n_res_blocks);

}  // namespace ips
