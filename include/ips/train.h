// Training runs (SPEC §1.4): epochs of train_step over a data set, evaluation with infer_step after
// each, metrics.jsonl, atomic checkpoints and exact resume.
#pragma once

#include <functional>

#include "ips/dataset.h"
#include "ips/distributed.h"
#include "ips/evaluate.h"
#include "ips/model.h"

namespace ips {

struct EpochRecord {
    int epoch = 0;
    double train_loss = 0;
    EvalResult test;
};

// How a training run is carried out (the config says what is trained).
struct RunOptions {
    std::string out_dir = "runs/default";
    torch::Device device = torch::kCPU;
    bool resume = false;        // continue from out_dir/last.pt
    bool progress = true;       // progress bar on stderr
    std::function<void(const EpochRecord&)> on_epoch;  // called after each epoch's checkpoint (the Python module's callback)
    int stop_after_epoch = -1;  // end this run after that epoch (1-based), as if interrupted
    std::string init_weights;   // start from these weights (weights_load: ours or reference layout)
    DistGroupPtr dist;          // a data-parallel job (dist_init); null: one process
};

// Trains cfg on dataset_open(cfg, "train"), evaluating on "test" after every epoch.
// Writes out_dir/{config.yaml, metrics.jsonl, last.pt, best.pt}. Returns the epochs run here.
// SIGTERM or SIGINT stops it after the current step (or test pass) with last.pt written there and
// throws Interrupted; --resume then continues exactly, mid-epoch included (docs/RELIABILITY.md).
// In a job the global batch B is split over the ranks (B must divide by the world size), rank 0
// alone writes, and a checkpoint resumes on any number of ranks (docs/DISTRIBUTED.md).
std::vector<EpochRecord> train_run(const Config& cfg, const RunOptions& opt);

}  // namespace ips
