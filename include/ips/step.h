// One training step and one inference step (SPEC §1.1, §1.4): select -> gather -> forward ->
// loss / attention. `ips train`, `eval`, `bench` and `predict` all run these two functions, so
// what `ips bench` times is exactly what training runs.
#pragma once

#include <random>
#include <stdexcept>

#include "ips/dataset.h"
#include "ips/distributed.h"
#include "ips/model.h"
#include "ips/select.h"

namespace ips {

struct Batch {
    torch::Tensor patches;  // [B, M, ...patch_shape] on the compute device
    torch::Tensor idx;      // [B, M] int64 grid indices
    torch::Tensor valid;    // [B, M] bool
    torch::Tensor scores;   // [B, M] selection scores
    std::vector<torch::Tensor> targets;  // per task, on the compute device (none for unlabelled inputs)
    std::vector<torch::Tensor> logits;   // per image [N, H, T] with SelectExtras::logits (Selection::logits)
    SelectTimes times;                   // summed over the selection calls, with SelectExtras::timed
};

// Selects and gathers M patches for each example. Groups of cfg.train.B_seq images share a
// selection call; sources move to the device first when cfg.data.eager (eager / eager
// sequential), otherwise they stay where they are and only chunks travel (lazy). `train` picks
// the shuffle setting.
Batch batch_make(IPSNet& net, const Config& cfg, const std::vector<Example>& examples,
                 const torch::Device& device, std::mt19937_64& rng, bool train, const SelectExtras& extras = {});

// Mean over tasks of: NLL of log(softmax + eps) for softmax tasks, BCE for sigmoid tasks.
// logits/targets: per task, [B, n_class] / [B] or [B, n_class]. per_task (optional) receives
// each task's loss.
torch::Tensor loss_compute(const std::vector<Task>& tasks, double eps, const std::vector<torch::Tensor>& logits,
                           const std::vector<torch::Tensor>& targets, std::vector<double>* per_task = nullptr);

// Learning rate of the optimizer step that follows `step` steps taken (0-based), as the
// reference's adjust_learning_rate(step = s) with s = step + 1 (SPEC §1.4): lr * s / warmup_steps
// while s < warmup_steps (n_epoch_warmup epochs), then cosine from lr down to 0.001 * lr at s =
// n_epoch epochs of steps.
double lr_at(const TrainOptions& opt, int64_t step, int64_t steps_per_epoch);

// AdamW over every parameter with the configured weight decay (the reference decays all of them).
std::unique_ptr<torch::optim::AdamW> optimizer_make(IPSNet& net, const TrainOptions& opt);
// Sets every parameter group's learning rate (AdamW groups).
void optimizer_lr_set(torch::optim::Optimizer& optimizer, double lr);

// Thrown by train_step for a NaN or infinite loss, before any weight changes.
struct NonFiniteLoss : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// Where a run is in its schedule: steps taken so far and steps per epoch.
struct StepCounter {
    int64_t step = 0;
    int64_t steps_per_epoch = 1;
};

// This rank's part of a data-parallel step: the job, and the weight of its examples in the global
// batch (its count over the batch's count; 0 for a stand-in forward on a rank whose share of the
// batch is empty). No group: one process, weight 1.
struct StepShare {
    DistGroup* group = nullptr;
    double weight = 1.0;
};

// One optimizer step on the examples: selection (no gradients), gather, forward in train mode,
// loss, finite check, learning rate of the schedule, backward, AdamW step. Advances `counter`.
// Returns the loss of the (global) batch. A non-finite loss throws NonFiniteLoss (naming the step
// and the examples) before any weight changes; with cfg.train.nonfinite_loss "skip" it instead
// leaves weights and BatchNorm statistics as they were, advances `counter` and returns NaN.
// In a job each rank back-propagates weight x its loss and the gradients are summed over the ranks
// (gradients_allreduce), which is the gradient of the global batch's mean loss; the finite check
// then runs on the global loss, so every rank stops at the same step, and BatchNorm buffers are
// copied from rank 0 unless cfg.train.sync_bn already keeps them equal.
double train_step(IPSNet& net, torch::optim::Optimizer& optimizer, const Config& cfg,
                  const std::vector<Example>& examples, const torch::Device& device, std::mt19937_64& rng,
                  StepCounter& counter, const StepShare& share = {});

struct Inference {
    Batch batch;
    std::vector<torch::Tensor> logits;  // per task [B, n_class]
    std::vector<torch::Tensor> probs;   // per task [B, n_class], softmax or sigmoid
    torch::Tensor attn;                 // [B, H, T, M] aggregator attention over the selected patches
    std::vector<torch::Tensor> patch_scores;  // with SelectExtras::logits: per image [N] (select.h patch_scores)
};

// Selection and forward in eval mode without gradients; the net's mode is restored. With
// extras.logits every patch of each image is also scored, comparably across the image
// (Inference::patch_scores, select.h patch_scores).
Inference infer_step(IPSNet& net, const Config& cfg, const std::vector<Example>& examples,
                     const torch::Device& device, std::mt19937_64& rng, const SelectExtras& extras = {});

// Attention over the selected patches, mean over heads then tokens: [B, H, T, M] -> [B, M].
torch::Tensor attention_per_patch(const torch::Tensor& attn);

}  // namespace ips
