// Testing a net on a data set: loss and each task's metric, over one process or the ranks of a
// job (SPEC §1.4); what `ips train` runs after every epoch and `ips eval` runs once.
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

}  // namespace ips
