// Training and evaluation (SPEC §1.4): batch assembly from per-image selections, multi-task loss,
// AdamW with per-step warm-up + cosine schedule, metrics, atomic checkpoints, exact resume.
#pragma once

#include <random>

#include "ips/dataset.h"
#include "ips/model.h"
#include "ips/select.h"

namespace ips {

struct Batch {
    torch::Tensor patches;  // [B, M, ...patch_shape] on the compute device
    torch::Tensor idx;      // [B, M] int64 grid indices
    torch::Tensor valid;    // [B, M] bool
    torch::Tensor scores;   // [B, M] selection scores
    std::vector<torch::Tensor> targets;  // per task, on the compute device
};

// Selects and gathers M patches for each example. Groups of cfg.B_seq images share a selection
// call; sources move to the device first when cfg.eager (eager / eager sequential), otherwise they
// stay where they are and only chunks travel (lazy). `train` picks the shuffle setting.
Batch batch_make(IPSNet& net, const Config& cfg, const std::vector<Example>& examples,
                 const torch::Device& device, std::mt19937_64& rng, bool train);

SelectOptions select_options(const Config& cfg, const torch::Device& device, bool train);

// Mean over tasks of: NLL of log(softmax + eps) for softmax tasks, BCE for sigmoid tasks.
// logits/targets: per task. per_task (optional) receives each task's loss.
torch::Tensor loss_compute(const Config& cfg, const std::vector<torch::Tensor>& logits,
                           const std::vector<torch::Tensor>& targets,
                           std::vector<double>* per_task = nullptr);

// Learning rate at optimizer step `step` (0-based): linear warm-up from 0 over n_epoch_warmup
// epochs, then cosine from lr to 0.001 * lr at the end of n_epoch.
double lr_at(const Config& cfg, int64_t step, int64_t steps_per_epoch);

// probs [n, C], targets [n] int64
double metric_accuracy(const torch::Tensor& probs, const torch::Tensor& targets);
// probs [n, C], targets [n, C]: every output thresholded at 0.5 must match
double metric_multilabel_accuracy(const torch::Tensor& probs, const torch::Tensor& targets);
// scores [n], labels [n] in {0, 1}: area under the ROC curve, ties counted half
double metric_auc(const torch::Tensor& scores, const torch::Tensor& labels);
// The task's configured metric from stacked probabilities and targets.
double metric_compute(const Task& task, const torch::Tensor& probs, const torch::Tensor& targets);

struct EvalResult {
    double loss = 0;
    std::vector<double> task_loss;    // per task
    std::vector<double> task_metric;  // per task, its configured metric
    int64_t n = 0;
    double score() const;  // mean of task metrics: what "best" checkpoints are chosen by
};

EvalResult evaluate(IPSNet& net, const Config& cfg, Dataset& data, const torch::Device& device,
                    bool progress);

struct TrainOptions {
    std::string out_dir = "runs/default";
    torch::Device device = torch::kCPU;
    bool resume = false;        // continue from out_dir/last.pt
    bool progress = true;       // progress bar on stderr
    int stop_after_epoch = -1;  // end this run after that epoch (1-based), as if interrupted
    std::string init_weights;   // start from these weights (weights_load: ours or reference layout)
};

struct EpochRecord {
    int epoch = 0;
    double train_loss = 0;
    EvalResult test;
};

// Trains cfg on dataset_open(cfg, "train"), evaluating on "test" after every epoch.
// Writes out_dir/{config.yaml, metrics.jsonl, last.pt, best.pt}. Returns the epochs run here.
std::vector<EpochRecord> train_run(const Config& cfg, const TrainOptions& opt);

// Builds the network and seeds parameters deterministically from cfg.seed.
// `initial_weights` false skips encoder_weights: for callers that load a whole model next.
IPSNet net_make(const Config& cfg, bool initial_weights = true);

}  // namespace ips
