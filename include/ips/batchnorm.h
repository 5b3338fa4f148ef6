// The model's BatchNorm: libtorch's function with the parameters and buffers of nn::BatchNorm1d/2d
// (same state-dict names, so checkpoints and torchvision files load as before), plus what
// PyTorch's SyncBatchNorm adds for data-parallel jobs (config key sync_bn). Its own module
// because libtorch's BatchNorm classes cannot be subclassed: their base's pretty_print is not
// exported, and a subclass's vtable needs it.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "ips/distributed.h"

namespace ips {

// What the layers of one net share in a job: the group, and whether this rank's patches count. A
// rank with no example in an epoch's last step runs a stand-in forward that joins the
// collectives without adding to the statistics.
struct BatchNormSync {
    DistGroup* group = nullptr;
    bool contributes = true;
};
using BatchNormSyncPtr = std::shared_ptr<BatchNormSync>;

// Affine BatchNorm over dimension 1 of [N, C] or [N, C, ...] inputs, momentum 0.1, tracking
// running statistics. In training mode with a sync attached: mean and variance over the patches
// of every rank (each rank's count, mean and variance all-gathered and combined), running
// statistics updated with the global ones (so equal on every rank), and in the backward pass the
// all-reduced sums of dy and dy·x̂. Otherwise exactly torch::batch_norm.
struct BatchNormImpl : torch::nn::Cloneable<BatchNormImpl> {
    explicit BatchNormImpl(int64_t num_features, double eps = 1e-5, double momentum = 0.1);
    void reset() override;
    void pretty_print(std::ostream& stream) const override;
    torch::Tensor forward(const torch::Tensor& x);  // [N, C, ...] -> [N, C, ...]

    int64_t num_features;
    double eps, momentum;
    torch::Tensor weight, bias;                                  // [C]
    torch::Tensor running_mean, running_var, num_batches_tracked;  // [C], [C], [] int64
    BatchNormSyncPtr sync;
};
TORCH_MODULE(BatchNorm);

// Attaches `sync` to every BatchNorm of `module` (null detaches: each rank's own statistics).
void module_batchnorm_sync(torch::nn::Module& module, const BatchNormSyncPtr& sync);

}  // namespace ips
