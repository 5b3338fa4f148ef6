#include "ips/model.h"

#include <cmath>

#include "ips/batchnorm.h"
#include "ips/precision.h"
#include "ips/vit.h"

namespace ips {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv_make(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
    return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}

// torchvision's BasicBlock (ResNet-18/34): two 3x3 convolutions, stride on the first.
struct BasicBlockImpl : nn::Module {
    BasicBlockImpl(int64_t in, int64_t planes, int64_t stride) {
        conv1 = register_module("conv1", conv_make(in, planes, 3, stride, 1));
        bn1 = register_module("bn1", BatchNorm(planes));
        conv2 = register_module("conv2", conv_make(planes, planes, 3, 1, 1));
        bn2 = register_module("bn2", BatchNorm(planes));
        if (stride != 1 || in != planes) {
            downsample = register_module(
                "downsample", nn::Sequential(conv_make(in, planes, 1, stride, 0), BatchNorm(planes)));
        }
    }
    torch::Tensor forward(torch::Tensor x) {
        auto identity = downsample ? downsample->forward(x) : x;
        auto out = torch::relu(bn1(conv1(x)));
        out = bn2(conv2(out));
        return torch::relu(out + identity);
    }
    nn::Conv2d conv1{nullptr}, conv2{nullptr};
    BatchNorm bn1{nullptr}, bn2{nullptr};
    nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

// torchvision's Bottleneck (ResNet-50, "v1.5"): 1x1, 3x3 (carrying the stride), 1x1 with 4x expansion.
struct BottleneckImpl : nn::Module {
    BottleneckImpl(int64_t in, int64_t planes, int64_t stride) {
        int64_t out = planes * 4;
        conv1 = register_module("conv1", conv_make(in, planes, 1, 1, 0));
        bn1 = register_module("bn1", BatchNorm(planes));
        conv2 = register_module("conv2", conv_make(planes, planes, 3, stride, 1));
        bn2 = register_module("bn2", BatchNorm(planes));
        conv3 = register_module("conv3", conv_make(planes, out, 1, 1, 0));
        bn3 = register_module("bn3", BatchNorm(out));
        if (stride != 1 || in != out) {
            downsample = register_module(
                "downsample", nn::Sequential(conv_make(in, out, 1, stride, 0), BatchNorm(out)));
        }
    }
    torch::Tensor forward(torch::Tensor x) {
        auto identity = downsample ? downsample->forward(x) : x;
        auto out = torch::relu(bn1(conv1(x)));
        out = torch::relu(bn2(conv2(out)));
        out = bn3(conv3(out));
        return torch::relu(out + identity);
    }
    nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
    BatchNorm bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
    nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

// A stage of blocks. Sequential cannot nest in Sequential (its forward is a template), so a stage
// is a Sequential with a plain forward; its children are still named "0", "1", ...
struct ResLayerImpl : nn::SequentialImpl {
    using nn::SequentialImpl::SequentialImpl;
    torch::Tensor forward(torch::Tensor x) { return nn::SequentialImpl::forward(x); }
};
TORCH_MODULE(ResLayer);

ResLayer resnet_layer_make(bool bottleneck, int64_t* in, int64_t planes, int n_blocks, int64_t stride) {
    ResLayer layer;
    for (int b = 0; b < n_blocks; ++b) {
        int64_t s = b == 0 ? stride : 1;
        if (bottleneck) {
            layer->push_back(Bottleneck(*in, planes, s));
            *in = planes * 4;
        } else {
            layer->push_back(BasicBlock(*in, planes, s));
            *in = planes;
        }
    }
    return layer;
}

// torchvision's initialisation: He-normal (fan_out) convolutions, BatchNorm weight 1 / bias 0.
void resnet_init(nn::Module& m) {
    torch::NoGradGuard no_grad;
    for (auto& mod : m.modules(/*include_self=*/true)) {
        if (auto* conv = mod->as<nn::Conv2d>()) {
            nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
        } else if (auto* bn = mod->as<BatchNorm>()) {
            nn::init::ones_(bn->weight);
            nn::init::zeros_(bn->bias);
        }
    }
}

// Inference path of the trunk with every eval-mode BatchNorm folded into the convolution before it:
// conv(x, W·s) + (β − μ·s), s = γ / sqrt(σ² + ε). The same function with one pass over each
// activation instead of two (with the in-place ReLU below: Megapixel MNIST selection + forward of
// B = 2 on 2 cores 900 -> 684 ms, docs/BENCHMARKS.md). Used only without gradients in eval mode.
torch::Tensor conv_bn_folded(const torch::Tensor& x, const nn::Conv2d& conv, const BatchNormImpl& bn) {
    auto scale = bn.weight / torch::sqrt(bn.running_var + bn.eps);  // [C_out]
    auto w = conv->weight * scale.view({-1, 1, 1, 1});
    auto b = bn.bias - bn.running_mean * scale;
    // Every trunk convolution pads by half its kernel (conv_make); reading the options' padding
    // variant differs between libtorch versions.
    const int64_t pad = conv->weight.size(2) / 2;
    return torch::conv2d(x, w, b, conv->options.stride(), pad);
}

torch::Tensor downsample_folded(const nn::Sequential& ds, const torch::Tensor& x) {
    return conv_bn_folded(x, nn::Conv2d(std::dynamic_pointer_cast<nn::Conv2dImpl>(ds->ptr(0))),
                          *std::dynamic_pointer_cast<BatchNormImpl>(ds->ptr(1)));
}

// In place where possible: each elementwise pass over a fresh buffer costs about as much as a
// small convolution here (memory-bound), so ReLU and the residual add reuse the conv's output.
torch::Tensor block_folded(const std::shared_ptr<nn::Module>& block, const torch::Tensor& x) {
    if (auto* b = dynamic_cast<BasicBlockImpl*>(block.get())) {
        auto identity = b->downsample ? downsample_folded(b->downsample, x) : x;
        auto out = conv_bn_folded(x, b->conv1, *b->bn1).relu_();
        return conv_bn_folded(out, b->conv2, *b->bn2).add_(identity).relu_();
    }
    auto* b = dynamic_cast<BottleneckImpl*>(block.get());
    TORCH_CHECK(b, "unexpected module in a ResNet stage");
    auto identity = b->downsample ? downsample_folded(b->downsample, x) : x;
    auto out = conv_bn_folded(x, b->conv1, *b->bn1).relu_();
    out = conv_bn_folded(out, b->conv2, *b->bn2).relu_();
    return conv_bn_folded(out, b->conv3, *b->bn3).add_(identity).relu_();
}

}  // namespace

torch::nn::Sequential resnet_trunk_make(EncoderType enc_type, int64_t n_chan_in,
                                        int n_res_blocks, int64_t* out_dim, int64_t width) {
    TORCH_CHECK(enc_type != EncoderType::vit, "resnet_trunk_make: enc_type vit is not a ResNet");
    const bool bottleneck = enc_type == EncoderType::resnet50;
    const std::vector<int> blocks = enc_type == EncoderType::resnet18 ? std::vector<int>{2, 2, 2, 2}
                                                                     : std::vector<int>{3, 4, 6, 3};
    nn::Sequential trunk;
    trunk->push_back(conv_make(n_chan_in, width, 7, 2, 3));
    trunk->push_back(BatchNorm(width));
    trunk->push_back(nn::ReLU(nn::ReLUOptions().inplace(true)));
    trunk->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
    int64_t in = width;
    const int64_t planes[4] = {width, 2 * width, 4 * width, 8 * width};
    for (int l = 0; l < n_res_blocks; ++l)
        trunk->push_back(resnet_layer_make(bottleneck, &in, planes[l], blocks[l], l == 0 ? 1 : 2));
    trunk->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
    trunk->push_back(nn::Flatten());
    resnet_init(*trunk);
    if (out_dim) *out_dim = in;
    return trunk;
}

torch::Tensor resnet_trunk_forward_folded(torch::nn::Sequential trunk, const torch::Tensor& x) {
    // Layout of resnet_trunk_make: 0 conv1, 1 bn1, 2 relu, 3 maxpool, stages, avgpool, flatten.
    auto h = conv_bn_folded(x, nn::Conv2d(std::dynamic_pointer_cast<nn::Conv2dImpl>(trunk->ptr(0))),
                            *std::dynamic_pointer_cast<BatchNormImpl>(trunk->ptr(1)))
                 .relu_();
    h = std::dynamic_pointer_cast<nn::MaxPool2dImpl>(trunk->ptr(3))->forward(h);
    for (size_t i = 4; i + 2 < trunk->size(); ++i)
        for (const auto& block : trunk->ptr(i)->children()) h = block_folded(block, h);
    return torch::flatten(torch::adaptive_avg_pool2d(h, {1, 1}), 1);
}

torch::nn::Sequential projector_make(int64_t n_features, int64_t D) {
    return nn::Sequential(
        nn::LayerNorm(nn::LayerNormOptions({n_features}).eps(1e-5).elementwise_affine(false)),
        nn::Linear(n_features, D), BatchNorm(D), nn::ReLU());
}

torch::Tensor pos_enc_1d(const torch::Tensor& idx, int64_t D) {
    TORCH_CHECK(D % 2 == 0, "positional encoding needs an even D, got ", D);
    auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(idx.device());
    auto div = torch::exp(torch::arange(0, D, 2, opts) * (-std::log(10000.0) / static_cast<double>(D)));
    auto angle = idx.to(torch::kFloat32).unsqueeze(-1) * div;  // [..., D/2]
    // Interleave so that even columns hold sin and odd columns cos.
    return torch::stack({torch::sin(angle), torch::cos(angle)}, -1).flatten(-2);
}

CrossAttentionImpl::CrossAttentionImpl(int64_t n_token_, int64_t H_, int64_t D, int64_t D_k_,
                                       int64_t D_v_, double attn_dropout, double dropout)
    : n_token(n_token_), H(H_), D_k(D_k_), D_v(D_v_) {
    q = register_parameter("q", torch::empty({1, n_token, D}));
    double bound = std::sqrt(1.0 / static_cast<double>(D_k));
    {
        torch::NoGradGuard no_grad;
        q.uniform_(-bound, bound);
    }
    q_w = register_module("q_w", nn::Linear(nn::LinearOptions(D, H * D_k).bias(false)));
    k_w = register_module("k_w", nn::Linear(nn::LinearOptions(D, H * D_k).bias(false)));
    v_w = register_module("v_w", nn::Linear(nn::LinearOptions(D, H * D_v).bias(false)));
    fc = register_module("fc", nn::Linear(nn::LinearOptions(H * D_v, D).bias(false)));
    layer_norm = register_module("layer_norm", nn::LayerNorm(nn::LayerNormOptions({D}).eps(1e-6)));
    attn_drop = register_module("attn_drop", nn::Dropout(attn_dropout));
    drop = register_module("drop", nn::Dropout(dropout));
}

torch::Tensor CrossAttentionImpl::logits(const torch::Tensor& x) {
    const int64_t B = x.size(0), N = x.size(1);
    auto qh = q_w(q).view({1, n_token, H, D_k}).transpose(1, 2);  // [1, H, T, D_k]
    auto kh = k_w(x).view({B, N, H, D_k}).transpose(1, 2);        // [B, H, N, D_k]
    return torch::matmul(qh / std::sqrt(static_cast<double>(D_k)), kh.transpose(2, 3));
}

torch::Tensor CrossAttentionImpl::attention_of(torch::Tensor logits, const torch::Tensor& valid) {
    if (valid.defined())  // padding rows get no attention at all
        logits = logits.masked_fill(valid.logical_not().view({logits.size(0), 1, 1, logits.size(3)}),
                                    -std::numeric_limits<float>::infinity());
    return attn_drop(torch::softmax(logits, -1));  // [B, H, T, N]
}

torch::Tensor CrossAttentionImpl::attention(const torch::Tensor& x, const torch::Tensor& valid) {
    return attention_of(logits(x), valid);
}

torch::Tensor CrossAttentionImpl::scores(const torch::Tensor& x, const torch::Tensor& valid) {
    return attention(x, valid).mean(1).mean(1);  // heads, then tokens -> [B, N]
}

torch::Tensor CrossAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& valid,
                                          torch::Tensor* attn_out) {
    const int64_t B = x.size(0), N = x.size(1);
    auto attn = attention(x, valid);
    auto vh = v_w(x).view({B, N, H, D_v}).transpose(1, 2);                 // [B, H, N, D_v]
    auto out = torch::matmul(attn, vh).transpose(1, 2).reshape({B, n_token, H * D_v});
    out = drop(fc(out));
    if (attn_out) *attn_out = attn;
    // The residual adds the raw query parameter, not its projection (as the reference does).
    return layer_norm(out + q);
}

MLPImpl::MLPImpl(int64_t D, int64_t D_inner, double dropout) {
    w_1 = register_module("w_1", nn::Linear(D, D_inner));
    w_2 = register_module("w_2", nn::Linear(D_inner, D));
    layer_norm = register_module("layer_norm", nn::LayerNorm(nn::LayerNormOptions({D}).eps(1e-6)));
    drop = register_module("drop", nn::Dropout(dropout));
}

torch::Tensor MLPImpl::forward(const torch::Tensor& x) {
    return layer_norm(x + drop(w_2(torch::relu(w_1(x)))));
}

TransformerImpl::TransformerImpl(int64_t n_token, int64_t H, int64_t D, int64_t D_k, int64_t D_v,
                                 int64_t D_inner, double attn_dropout, double dropout) {
    crs_attn = register_module("crs_attn", CrossAttention(n_token, H, D, D_k, D_v, attn_dropout, dropout));
    mlp = register_module("mlp", MLP(D, D_inner, dropout));
}

torch::Tensor TransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& valid,
                                       torch::Tensor* attn_out) {
    return mlp(crs_attn(x, valid, attn_out));
}

IPSNetImpl::IPSNetImpl(const ModelOptions& opt_, const ComputeOptions& compute_)
    : opt(opt_), compute(compute_), D(opt_.D) {
    if (opt.is_image && opt.enc_type == EncoderType::vit) {
        const VitPreset& p = vit_preset(opt.vit);
        Vit vit(vit_preset_options(p, opt.vit_depth));
        TORCH_CHECK(vit_out_dim(vit->opt) == D, "config key 'D' is ", D, " but the ViT '", opt.vit, "' yields ",
                    vit_out_dim(vit->opt));
        encoder = nn::Sequential(VitTransform(p), vit);
    } else if (opt.is_image) {
        int64_t trunk_dim = 0;
        encoder = resnet_trunk_make(opt.enc_type, opt.n_chan_in, opt.n_res_blocks, &trunk_dim, opt.encoder_width);
        TORCH_CHECK(trunk_dim == D, "config key 'D' is ", D, " but the trunk yields ", trunk_dim);
    } else {
        encoder = projector_make(opt.n_chan_in, D);
    }
    register_module("encoder", encoder);
    transf = register_module("transf", Transformer(opt.n_token, opt.H, D, opt.D_k, opt.D_v, opt.D_inner,
                                                   opt.attn_dropout, opt.dropout));
    output_layers = register_module("output_layers", nn::ModuleDict());
    for (const auto& task : opt.tasks) {
        // A one-element Sequential keeps the reference key "output_layers.<name>.0.weight".
        nn::Sequential head(nn::Linear(D, opt.n_class));
        output_layers->update(std::vector<std::pair<std::string, std::shared_ptr<nn::Module>>>{
            {task.name, head.ptr()}});
        heads.push_back(head);
    }
    cpu_kernels_check();
    precision = precision_resolve(compute.precision, torch::kCPU);
    channels_last = resnet() && channels_last_resolve(compute.channels_last, torch::kCPU);
    encoder_freeze();
}

// The encoder's blocks in order (ViT blocks, or the residual blocks of every stage), what comes
// before them (ResNet stem; ViT patch embedding and tokens) and what after (the ViT's final norm):
// freeze_encoder K keeps the last K blocks and what follows them trainable.
void IPSNetImpl::encoder_freeze() {
    frozen.clear();
    const int K = opt.freeze_encoder;
    if (!opt.is_image || K < 0) return;
    std::vector<std::shared_ptr<nn::Module>> before, blocks, after;
    std::vector<torch::Tensor> tokens;
    if (auto v = vit()) {
        before.push_back(v->patch_embed.ptr());
        for (auto* t : {&v->cls_token, &v->reg_token, &v->pos_embed})
            if (t->defined()) tokens.push_back(*t);
        for (const auto& b : *v->blocks) blocks.push_back(b);
        after.push_back(v->norm.ptr());
    } else {
        for (size_t i = 0; i < 4; ++i) before.push_back(encoder->ptr(i));  // conv1 bn1 relu maxpool
        for (size_t i = 4; i + 2 < encoder->size(); ++i)
            for (const auto& b : encoder->ptr(i)->children()) blocks.push_back(b);
    }
    const size_t n_frozen = blocks.size() - std::min(blocks.size(), static_cast<size_t>(K));
    frozen = before;
    frozen.insert(frozen.end(), blocks.begin(), blocks.begin() + static_cast<std::ptrdiff_t>(n_frozen));
    if (K == 0) frozen.insert(frozen.end(), after.begin(), after.end());
    for (auto& m : frozen)
        for (auto& p : m->parameters()) p.requires_grad_(false);
    for (auto& t : tokens) t.requires_grad_(false);
}

void IPSNetImpl::train(bool on) {
    nn::Module::train(on);
    for (auto& m : frozen) m->eval();  // frozen BatchNorm keeps its statistics
}

Vit IPSNetImpl::vit() const {
    if (!opt.is_image || opt.enc_type != EncoderType::vit) return nullptr;
    return Vit(std::dynamic_pointer_cast<VitImpl>(encoder->ptr(1)));
}

torch::Tensor IPSNetImpl::embed(const torch::Tensor& patches) {
    const bool nhwc = patches.dim() == 4 && channels_last;
    AutocastScope autocast(precision, patches.device());
    const auto x = nhwc ? patches.contiguous(torch::MemoryFormat::ChannelsLast) : patches;
    // Without gradients in eval mode (selection, inference) BatchNorm folds into the convolutions.
    const bool fold = resnet() && !encoder->is_training() && !torch::GradMode::is_enabled();
    auto emb = fold ? resnet_trunk_forward_folded(encoder, x) : encoder->forward(x);
    return emb.scalar_type() == torch::kFloat32 ? emb : emb.to(torch::kFloat32);
}

IPSNet net_make(const ModelOptions& opt, const ComputeOptions& compute, int64_t seed) {
    torch::manual_seed(static_cast<uint64_t>(seed));
    return IPSNet(opt, compute);
}

void net_to(IPSNet& net, const torch::Device& device) {
    backend_configure(net->compute, device);
    net->to(device);
    net->precision = precision_resolve(net->compute.precision, device);
    net->channels_last = net->resnet() && channels_last_resolve(net->compute.channels_last, device);
    if (net->channels_last) module_channels_last(*net->encoder);
}

torch::Tensor IPSNetImpl::with_pos(const torch::Tensor& emb, const torch::Tensor& idx) {
    if (!opt.use_pos) return emb;
    return emb + pos_enc_1d(idx.clamp_min(0), D).to(emb.dtype());
}

std::vector<torch::Tensor> IPSNetImpl::forward(const torch::Tensor& patches, const torch::Tensor& idx,
                                               const torch::Tensor& valid, torch::Tensor* attn_out) {
    const int64_t B = patches.size(0), M = patches.size(1);
    std::vector<int64_t> flat_shape{B * M};
    for (int64_t d = 2; d < patches.dim(); ++d) flat_shape.push_back(patches.size(d));
    auto flat = patches.reshape(flat_shape);
    torch::Tensor emb;
    if (valid.defined() && !valid.all().item<bool>()) {
        // Padding rows are neither encoded nor seen by BatchNorm: they would bias its statistics.
        auto keep = valid.reshape({B * M});
        auto emb_valid = embed(flat.index({keep}));
        emb = torch::zeros({B * M, D}, emb_valid.options()).index_put({keep}, emb_valid);
    } else {
        emb = embed(flat);
    }
    emb = with_pos(emb.view({B, M, D}), idx);
    auto tokens = transf(emb, valid, attn_out);  // [B, T, D]
    std::vector<torch::Tensor> logits;
    for (size_t t = 0; t < opt.tasks.size(); ++t)
        logits.push_back(heads[t]->forward(tokens.select(1, opt.tasks[t].id)));
    return logits;
}

std::vector<torch::Tensor> IPSNetImpl::probabilities(const std::vector<torch::Tensor>& logits) const {
    std::vector<torch::Tensor> probs;
    for (size_t t = 0; t < logits.size(); ++t)
        probs.push_back(opt.tasks[t].act_fn == ActFn::softmax ? torch::softmax(logits[t], -1)
                                                              : torch::sigmoid(logits[t]));
    return probs;
}

void attention_keys_zero(IPSNet& net) {
    torch::NoGradGuard no_grad;
    net->transf->crs_attn->k_w->weight.zero_();
}

int64_t parameter_count(torch::nn::Module& module) {
    int64_t n = 0;
    for (const auto& p : module.parameters()) n += p.numel();
    return n;
}

}  // namespace ips
