#include "ips/batchnorm.h"

namespace ips {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Every dimension but the channels: [N, C, ...] -> {0, 2, ...}.
std::vector<int64_t> reduce_dims(const torch::Tensor& x) {
    std::vector<int64_t> dims{0};
    for (int64_t d = 2; d < x.dim(); ++d) dims.push_back(d);
    return dims;
}

// [C] -> [1, C, 1, ...] to broadcast against x.
torch::Tensor per_channel(const torch::Tensor& v, const torch::Tensor& x) {
    std::vector<int64_t> shape(static_cast<size_t>(x.dim()), 1);
    shape[1] = v.size(0);
    return v.view(shape);
}

struct SyncedBatchNorm : torch::autograd::Function<SyncedBatchNorm> {
    // x [N, C, ...], weight/bias [C]; running_mean/var [C] updated in place.
    static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight, torch::Tensor bias,
                                 torch::Tensor running_mean, torch::Tensor running_var, double momentum, double eps,
                                 BatchNormSync* sync) {
        DistGroup& g = *sync->group;
        const auto dims = reduce_dims(x);
        const auto xf = x.to(torch::kFloat32);
        const double n_local = sync->contributes ? static_cast<double>(x.numel() / x.size(1)) : 0.0;
        // Each rank's (count, mean, variance); combined in double with the parallel-variance rule
        // so that the result matches one process's BatchNorm over all the patches.
        auto var_mean = torch::var_mean(xf, dims, /*unbiased=*/false);
        auto local = torch::cat({torch::full({1}, n_local, xf.options()), std::get<1>(var_mean), std::get<0>(var_mean)})
                         .to(torch::kFloat64);
        if (!sync->contributes) local.zero_();
        const auto all = torch::stack(dist_allgather(g, local));  // [W, 1 + 2C]
        const int64_t C = x.size(1);
        const auto n = all.select(1, 0);                             // [W]
        const auto means = all.narrow(1, 1, C), vars = all.narrow(1, 1 + C, C);  // [W, C]
        const double total = n.sum().item<double>();
        TORCH_CHECK(total > 1, "synchronised BatchNorm needs more than one value per channel over all ranks");
        const auto mean = (means * n.unsqueeze(1)).sum(0) / total;  // [C]
        const auto var = ((vars + (means - mean).pow(2)) * n.unsqueeze(1)).sum(0) / total;
        {
            torch::NoGradGuard no_grad;
            running_mean.mul_(1 - momentum).add_(mean.to(running_mean.dtype()), momentum);
            running_var.mul_(1 - momentum).add_((var * (total / (total - 1))).to(running_var.dtype()), momentum);
        }
        const auto invstd = torch::rsqrt(var + eps).to(torch::kFloat32);
        const auto xhat = (xf - per_channel(mean.to(torch::kFloat32), xf)) * per_channel(invstd, xf);
        auto y = xhat * per_channel(weight.to(torch::kFloat32), xf) + per_channel(bias.to(torch::kFloat32), xf);
        ctx->save_for_backward({xhat, invstd, weight});
        ctx->saved_data["total"] = total;
        ctx->saved_data["sync"] = reinterpret_cast<int64_t>(sync);
        ctx->saved_data["x_dtype"] = static_cast<int64_t>(x.scalar_type());
        return {y.to(x.scalar_type())};
    }

    static variable_list backward(AutogradContext* ctx, variable_list grads) {
        auto saved = ctx->get_saved_variables();
        const auto& xhat = saved[0];
        const auto& invstd = saved[1];
        const auto& weight = saved[2];
        auto* sync = reinterpret_cast<BatchNormSync*>(ctx->saved_data["sync"].toInt());
        const double total = ctx->saved_data["total"].toDouble();
        const auto dy = grads[0].to(torch::kFloat32);
        const auto dims = reduce_dims(dy);
        const auto sum_dy = dy.sum(dims);                // [C]
        const auto sum_dy_xhat = (dy * xhat).sum(dims);  // [C]
        // The parameter gradients stay local: the gradient all-reduce sums them over the ranks.
        auto global = torch::cat({sum_dy, sum_dy_xhat});
        if (!sync->contributes) global = global.zero_();
        dist_allreduce_sum(*sync->group, global);
        const int64_t C = sum_dy.size(0);
        const auto mean_dy = global.narrow(0, 0, C) / total, mean_dy_xhat = global.narrow(0, C, C) / total;
        // A stand-in's input is not part of the statistics, so nothing flows back into it.
        auto dx = sync->contributes ? per_channel(weight.to(torch::kFloat32) * invstd, dy) *
                                          (dy - per_channel(mean_dy, dy) - xhat * per_channel(mean_dy_xhat, dy))
                                    : torch::zeros_like(dy);
        const auto x_dtype = static_cast<c10::ScalarType>(ctx->saved_data["x_dtype"].toInt());
        return {dx.to(x_dtype), sum_dy_xhat.to(weight.scalar_type()), sum_dy.to(weight.scalar_type()),
                torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
    }
};

}  // namespace

BatchNormImpl::BatchNormImpl(int64_t num_features_, double eps_, double momentum_)
    : num_features(num_features_), eps(eps_), momentum(momentum_) {
    reset();
}

void BatchNormImpl::reset() {
    weight = register_parameter("weight", torch::ones({num_features}));
    bias = register_parameter("bias", torch::zeros({num_features}));
    running_mean = register_buffer("running_mean", torch::zeros({num_features}));
    running_var = register_buffer("running_var", torch::ones({num_features}));
    num_batches_tracked = register_buffer("num_batches_tracked", torch::tensor(int64_t{0}, torch::kLong));
}

void BatchNormImpl::pretty_print(std::ostream& stream) const { stream << "ips::BatchNorm(" << num_features << ")"; }

torch::Tensor BatchNormImpl::forward(const torch::Tensor& x) {
    if (is_training()) {
        torch::NoGradGuard no_grad;
        num_batches_tracked.add_(1);
    }
    if (!sync || !sync->group || !is_training())
        return torch::batch_norm(x, weight, bias, running_mean, running_var, is_training(), momentum, eps,
                                 at::globalContext().userEnabledCuDNN());
    return SyncedBatchNorm::apply(x, weight, bias, running_mean, running_var, momentum, eps, sync.get())[0];
}

void module_batchnorm_sync(torch::nn::Module& module, const BatchNormSyncPtr& sync) {
    for (const auto& m : module.modules())
        if (auto* bn = dynamic_cast<BatchNormImpl*>(m.get())) bn->sync = sync;
}

}  // namespace ips
