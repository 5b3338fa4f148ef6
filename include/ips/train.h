// Training runs (SPEC §1.4): epochs of train_step over a data set, evaluation with infer_step after
// each, metrics.jsonl, atomic checkpoints and exact resume.
#pragma once

#include <functional>
#include <stdexcept>

#include "ips/dataset.h"
#include "ips/distributed.h"
#include "ips/model.h"

namespace ips {

struct EvalResult {
    double loss = 0;
    std::vector<double> task_loss;    // per task
    std::vector<double> task_metric;  // per task, its configured metric
    int64_t n = 0;
    double score() const;  // mean of task metrics: what "best" checkpoints are chosen by
};

// Loss and metrics of the net on every example of `data`, B at a time, with infer_step. In a job
// (group) each rank evaluates its share (share_of) and every rank gets the metrics of the whole
// set: summed losses and the gathered predictions, so AUC sees every example.
// `stop`, when given, is asked after every batch; when it says yes, evaluate throws EvalStopped.
EvalResult evaluate(IPSNet& net, const Config& cfg, Dataset& data, const torch::Device& device, bool progress,
                    DistGroup* group = nullptr, const std::function<bool()>& stop = {});
struct EvalStopped : std::runtime_error {
    EvalStopped() : std::runtime_error("evaluation stopped") {}
};

// "test loss 0.41, majority accuracy 0.9200, ...": one line for people.
std::string eval_summary(const std::vector<Task>& tasks, const EvalResult& r);

// How a training run is carried out (the config says what is trained).
struct RunOptions {
    std::string out_dir = "runs/default";
    torch::Device device = torch::kCPU;
    bool resume = false;        // continue from out_dir/last.pt
    bool progress = true;       // progress bar on stderr
    int stop_after_epoch = -1;  // end this run after that epoch (1-based), as if interrupted
    std::string init_weights;   // start from these weights (weights_load: ours or reference layout)
    DistGroupPtr dist;          // a data-parallel job (dist_init); null: one process
};

struct EpochRecord {
    int epoch = 0;
    double train_loss = 0;
    EvalResult test;
};

// Trains cfg on dataset_open(cfg, "train"), evaluating on "test" after every epoch.
// Writes out_dir/{config.yaml, metrics.jsonl, last.pt, best.pt}. Returns the epochs run here.
// SIGTERM or SIGINT stops it after the current step (or test pass) with last.pt written there and
// throws Interrupted; --resume then continues exactly, mid-epoch included (docs/RELIABILITY.md).
// In a job the global batch B is split over the ranks (B must divide by the world size), rank 0
// alone writes, and a checkpoint resumes on any number of ranks (docs/DISTRIBUTED.md).
std::vector<EpochRecord> train_run(const Config& cfg, const RunOptions& opt);

}  // namespace ips
