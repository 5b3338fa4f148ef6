// Metrics of SPEC §1.4: accuracy (argmax), multi-label exact match, ROC AUC.
#pragma once

#include <torch/torch.h>

#include "ips/config.h"

namespace ips {

// probs [n, C], targets [n] int64
double metric_accuracy(const torch::Tensor& probs, const torch::Tensor& targets);
// probs [n, C], targets [n, C]: every output thresholded at 0.5 must match
double metric_multilabel_accuracy(const torch::Tensor& probs, const torch::Tensor& targets);
// scores [n], labels [n] in {0, 1}: area under the ROC curve, ties counted half; NaN with one class
double metric_auc(const torch::Tensor& scores, const torch::Tensor& labels);
// The task's configured metric from stacked probabilities [n, C] and targets ([n] or [n, C]).
double metric_compute(const Task& task, const torch::Tensor& probs, const torch::Tensor& targets);

}  // namespace ips
