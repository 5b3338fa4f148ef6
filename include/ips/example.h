// What a data set hands out and the step consumes: a patch source per image plus its targets.
// The engine only sees this interface; data sets that read files live in the data layer
// (dataset.h).
#pragma once

#include <random>

#include "ips/config.h"
#include "ips/patch_source.h"

namespace ips {

struct Example {
    PatchSourcePtr source;
    // One target per task, in config task order: softmax task -> int64 scalar (class index);
    // sigmoid task -> float [n_class] (multi-hot). Empty for inputs without labels (prediction).
    std::vector<torch::Tensor> targets;
    std::string name;  // file name or "split/index", for messages and predictions
};

struct Dataset {
    virtual ~Dataset() = default;
    virtual int64_t size() const = 0;
    virtual Example get(int64_t i) = 0;
};
using DatasetPtr = std::shared_ptr<Dataset>;

// The examples at positions start .. start + count - 1 of `order` (indices into `data`), fewer
// where `order` ends.
std::vector<Example> dataset_examples(Dataset& data, const std::vector<int64_t>& order, int64_t start, int64_t count);

// Stack per-example targets into per-task batch tensors: softmax [B] int64, sigmoid [B, n_class].
std::vector<torch::Tensor> targets_stack(const std::vector<Example>& examples, size_t n_tasks);

// Random targets for the model's tasks: class indices for softmax tasks, multi-hot [n_class]
// float for sigmoid tasks (synthetic data, benchmarks).
std::vector<torch::Tensor> targets_random(const ModelOptions& model, std::mt19937_64& rng);

}  // namespace ips
