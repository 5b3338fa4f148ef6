// The IPS network: patch encoder (ResNet or ViT trunk, or feature projector), one cross-attention
// transformer block with n_token learnable queries, one linear head per task.
// Module names follow the reference implementation's state_dict layout (SPEC §1.6) so that
// named_parameters() keys are exactly "encoder.4.0.conv1.weight", "transf.crs_attn.q", ...
#pragma once

#include <torch/torch.h>

#include "ips/config.h"
#include "ips/precision.h"
#include "ips/vit.h"

namespace ips {

// ResNet trunk in torchvision layout as a numbered Sequential:
// 0 conv1, 1 bn1, 2 relu, 3 maxpool, 4 layer1, 5 layer2, [6 layer3, 7 layer4], avgpool, flatten.
// width: channels of the first stage (64 in torchvision; narrower trunks are cheaper on CPUs).
// Output: [n, out_dim].
torch::nn::Sequential resnet_trunk_make(EncoderType enc_type, int64_t n_chan_in,
                                        int n_res_blocks, int64_t* out_dim, int64_t width = 64);

// The trunk's eval-mode function with each BatchNorm folded into its convolution (no gradients).
// x: [n, C, H, W] -> [n, out_dim], equal to trunk->forward(x) in eval mode up to rounding.
torch::Tensor resnet_trunk_forward_folded(torch::nn::Sequential trunk, const torch::Tensor& x);

// LayerNorm(F, no affine) -> Linear(F, D) -> BatchNorm1d(D) -> ReLU. Input [n, F], output [n, D].
torch::nn::Sequential projector_make(int64_t n_features, int64_t D);

// pe[n, 2k] = sin(n / 10000^(2k/D)), pe[n, 2k+1] = cos(...), computed for the given grid indices.
// idx: [...] int64 -> [..., D] float32 on idx's device. D must be even.
torch::Tensor pos_enc_1d(const torch::Tensor& idx, int64_t D);

struct CrossAttentionImpl : torch::nn::Module {
    CrossAttentionImpl(int64_t n_token, int64_t H, int64_t D, int64_t D_k, int64_t D_v,
                       double attn_dropout, double dropout);

    // Scaled query-key products before the softmax: x [B, N, D] -> [B, H, T, N]. A patch's logits
    // depend on it alone, not on the other rows, which is what makes whole-slide scores possible.
    torch::Tensor logits(const torch::Tensor& x);
    // x: [B, N, D]; valid: [B, N] bool or undefined (all valid).
    // Returns attention weights [B, H, T, N] (softmax over N, attention dropout applied in train mode).
    torch::Tensor attention(const torch::Tensor& x, const torch::Tensor& valid);
    // The same from logits [B, H, T, N] already computed.
    torch::Tensor attention_of(torch::Tensor logits, const torch::Tensor& valid);
    // Selection score per row: attention averaged over heads, then tokens. [B, N].
    torch::Tensor scores(const torch::Tensor& x, const torch::Tensor& valid);
    // out: [B, T, D] = LayerNorm(Dropout(fc(A V)) + q); attn_out (optional): [B, H, T, N].
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid,
                          torch::Tensor* attn_out = nullptr);

    int64_t n_token, H, D_k, D_v;
    torch::Tensor q;  // [1, T, D]
    torch::nn::Linear q_w{nullptr}, k_w{nullptr}, v_w{nullptr}, fc{nullptr};
    torch::nn::LayerNorm layer_norm{nullptr};
    torch::nn::Dropout attn_drop{nullptr}, drop{nullptr};
};
TORCH_MODULE(CrossAttention);

struct MLPImpl : torch::nn::Module {
    MLPImpl(int64_t D, int64_t D_inner, double dropout);
    torch::Tensor forward(const torch::Tensor& x);  // [B, T, D] -> [B, T, D]
    torch::nn::Linear w_1{nullptr}, w_2{nullptr};
    torch::nn::LayerNorm layer_norm{nullptr};
    torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(MLP);

struct TransformerImpl : torch::nn::Module {
    TransformerImpl(int64_t n_token, int64_t H, int64_t D, int64_t D_k, int64_t D_v, int64_t D_inner,
                    double attn_dropout, double dropout);
    // x: [B, N, D], valid: [B, N] or undefined -> [B, T, D]
    torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& valid,
                          torch::Tensor* attn_out = nullptr);
    CrossAttention crs_attn{nullptr};
    MLP mlp{nullptr};
};
TORCH_MODULE(Transformer);

struct IPSNetImpl : torch::nn::Module {
    // The compute options are resolved for the CPU here and again for the device by net_to.
    explicit IPSNetImpl(const ModelOptions& opt, const ComputeOptions& compute = {});

    // patches: [n, C, P, P] (images) or [n, F] (features) -> [n, D]
    torch::Tensor embed(const torch::Tensor& patches);
    // Adds the positional encoding of grid indices when use_pos. emb: [B, K, D], idx: [B, K] -> [B, K, D]
    torch::Tensor with_pos(const torch::Tensor& emb, const torch::Tensor& idx);
    // Encodes the selected patches and aggregates them.
    // patches: [B, M, ...], idx: [B, M] int64, valid: [B, M] bool or undefined.
    // Returns per-task logits, each [B, n_class]; attn_out (optional): [B, H, T, M].
    std::vector<torch::Tensor> forward(const torch::Tensor& patches, const torch::Tensor& idx,
                                       const torch::Tensor& valid, torch::Tensor* attn_out = nullptr);
    // Probabilities from logits: softmax or sigmoid per task. Each [B, n_class].
    std::vector<torch::Tensor> probabilities(const std::vector<torch::Tensor>& logits) const;

    // Module::train, then the frozen parts of the encoder (freeze_encoder) back to eval mode.
    void train(bool on = true) override;
    bool resnet() const { return opt.is_image && opt.enc_type != EncoderType::vit; }
    // The ViT trunk of an enc_type vit encoder (Sequential{VitTransform, Vit}); null otherwise.
    Vit vit() const;

    ModelOptions opt;
    ComputeOptions compute;
    Precision precision = Precision::fp32;  // resolved for the device the net is on
    bool channels_last = false;
    int64_t D;
    torch::nn::Sequential encoder{nullptr};
    Transformer transf{nullptr};
    torch::nn::ModuleDict output_layers{nullptr};
    std::vector<torch::nn::Sequential> heads;  // by task order, aliases of output_layers entries
    // The modules freeze_encoder froze (kept in eval mode; the ViT's tokens are frozen with them).
    std::vector<std::shared_ptr<torch::nn::Module>> frozen;

  private:
    void encoder_freeze();
};
TORCH_MODULE(IPSNet);

int64_t parameter_count(torch::nn::Module& module);

// Zeroes the aggregator's key projection: every patch then gets the same attention logit, and a
// training run's first selections are the patch shuffle's unbiased draw. Training from scratch
// starts so with the config key zero_keys (train_run). Random keys rank patches along one random direction of the embedding;
// with a pre-trained encoder that direction can rank every digit last, and a selection that never
// keeps an informative patch gives the aggregator nothing to learn from: the demo's stuck seeds
// (docs/DEMO.md). The keys' first gradient is not zero, as the query projection is random.
// Off by default: the reference's keys are random, and with zero keys the scores of the first
// steps are nearly equal, so rounding can decide selections (the distributed tests' 1-rank and
// 2-rank runs of 4 steps then differed by 6e-5 relative, against 1.1e-5 with random keys).
void attention_keys_zero(IPSNet& net);

// Seeds libtorch's generator with `seed` and builds the net: the same seed, the same weights.
IPSNet net_make(const ModelOptions& opt, const ComputeOptions& compute, int64_t seed);

// Moves the net to `device` and applies its compute options there: backend switches (TF32,
// cuDNN autotuning), the encoder's precision and channels-last convolution weights (precision.h).
void net_to(IPSNet& net, const torch::Device& device);

}  // namespace ips
