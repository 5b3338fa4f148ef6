// Our checkpoints: model parameters and buffers, optimizer state, progress and the resolved
// config, written atomically (temporary file, then rename) so a crash never loses the last good one.
// The file is a torch.save file: in Python, ckpt = torch.load(path) gives a dict whose 'model'
// entry is a state dict in the reference layout (SPEC §1.6), plus 'epoch', 'step',
// 'best_score', 'config_yaml' and, when saved with one, 'optimizer_libtorch' (opaque bytes).
#pragma once

#include <torch/torch.h>

#include "ips/model.h"

namespace ips {

struct CheckpointMeta {
    int64_t epoch = 0;        // epochs completed
    int64_t step = 0;         // optimizer steps taken
    double best_score = -1;   // best test score so far
    std::string config_yaml;  // resolved config of the run
};

void checkpoint_save(const std::string& path, IPSNet& net, torch::optim::Optimizer* optimizer,
                     const CheckpointMeta& meta);
// Loads into an already-built net (and optimizer, if given). Throws std::runtime_error naming
// the file and, for a mismatch, the parameter.
CheckpointMeta checkpoint_load(const std::string& path, IPSNet& net,
                               torch::optim::Optimizer* optimizer);
// Loads model weights from either our checkpoint or a PyTorch state dict in the reference
// implementation's layout (torch.save(model.state_dict())), strictly: missing, unexpected and
// mis-shaped keys are reported by name with the file.
void weights_load(const std::string& path, IPSNet& net);

// The initial weights the model options ask for: the trunk from `encoder_weights` (a torchvision
// ResNet file). With `pretrained` set and no file, warns that the trunk starts from random weights:
// nothing is downloaded here.
void initial_weights_apply(IPSNet& net);

// Reads only the meta data (to rebuild the config before building the net).
CheckpointMeta checkpoint_meta(const std::string& path);

}  // namespace ips
