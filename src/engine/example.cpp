#include "ips/example.h"

namespace ips {

std::vector<torch::Tensor> targets_stack(const std::vector<Example>& examples, size_t n_tasks) {
    std::vector<torch::Tensor> out;
    for (size_t t = 0; t < n_tasks; ++t) {
        std::vector<torch::Tensor> col;
        for (const auto& ex : examples) col.push_back(ex.targets.at(t));
        out.push_back(torch::stack(col));
    }
    return out;
}

std::vector<torch::Tensor> targets_random(const ModelOptions& model, std::mt19937_64& rng) {
    std::vector<torch::Tensor> targets;
    for (const auto& task : model.tasks) {
        if (task.act_fn == ActFn::softmax) {
            targets.push_back(torch::tensor(static_cast<int64_t>(rng() % static_cast<uint64_t>(model.n_class)), torch::kLong));
        } else {
            auto t = torch::zeros({model.n_class}, torch::kFloat32);
            for (int c = 0; c < model.n_class; ++c) t[c] = static_cast<float>(rng() & 1);
            targets.push_back(t);
        }
    }
    return targets;
}

std::vector<Example> dataset_examples(Dataset& data, const std::vector<int64_t>& order, int64_t start, int64_t count) {
    std::vector<Example> examples;
    for (int64_t i = start; i < std::min<int64_t>(static_cast<int64_t>(order.size()), start + count); ++i)
        examples.push_back(data.get(order[static_cast<size_t>(i)]));
    return examples;
}

}  // namespace ips
