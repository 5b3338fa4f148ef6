// Our checkpoints: model parameters and buffers, optimizer state, progress and the resolved
// config, written atomically (temporary file, then rename) so a crash never loses the last good one.
// The file is a torch.save file: in Python, ckpt = torch.load(path) gives a dict whose 'model'
// entry is a state dict in the reference layout (SPEC §1.6), plus 'epoch', 'step', 'best_score',
// 'config_yaml', 'epoch_batches', 'epoch_loss_sum', 'epoch_examples', 'epoch_skipped' and, when
// saved with one, 'optimizer_libtorch' (opaque bytes).
#pragma once

#include <torch/torch.h>

#include "ips/model.h"

namespace ips {

struct CheckpointMeta {
    int64_t epoch = 0;        // epochs completed
    int64_t step = 0;         // optimizer steps taken
    double best_score = -1;   // best test score so far
    std::string config_yaml;  // resolved config of the run
    // A checkpoint written inside an epoch (a run stopped by SIGTERM or SIGINT): the epoch after
    // `epoch` had this many batches done (0: the checkpoint is at an epoch boundary; all of them:
    // trained, not yet tested), `epoch_examples` examples counted in the loss whose sum (loss times
    // batch size) is `epoch_loss_sum`, and `epoch_skipped` batches skipped for a non-finite loss.
    int64_t epoch_batches = 0;
    double epoch_loss_sum = 0;
    int64_t epoch_examples = 0;
    int64_t epoch_skipped = 0;
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
