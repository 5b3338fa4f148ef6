#include "ips/vit.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <stdexcept>

#include "ips/runtime.h"
#include "ips/torch_compat.h"

namespace ips {

int64_t vit_out_dim(const VitOptions& o) {
    if (o.pool == VitPool::cls_mean) return 2 * o.dim;
    return o.pool == VitPool::attn_pool || o.pool == VitPool::attn_pool_kv ? o.pool_dim : o.dim;
}

VitPatchEmbedImpl::VitPatchEmbedImpl(int64_t in_chans, int64_t dim, int64_t patch_size) {
    proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_chans, dim, patch_size).stride(patch_size)));
}

torch::Tensor VitPatchEmbedImpl::forward(const torch::Tensor& x) {
    return proj->forward(x).flatten(2).transpose(1, 2);
}

VitLayerScaleImpl::VitLayerScaleImpl(int64_t dim) {
    gamma = register_parameter("gamma", torch::full({dim}, 1e-5));  // timm's init_values of these models
}

VitAttentionImpl::VitAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias) : heads(heads) {
    if (dim % heads != 0)
        throw std::invalid_argument("vit: dim " + std::to_string(dim) + " is not a multiple of heads " + std::to_string(heads));
    qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv_bias)));
    proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor VitAttentionImpl::forward(const torch::Tensor& x) {
    const int64_t B = x.size(0), T = x.size(1), D = x.size(2);
    auto qkv_ = qkv->forward(x).reshape({B, T, 3, heads, D / heads}).permute({2, 0, 3, 1, 4});  // [3, B, H, T, d]
    auto out = compat::attention_sdpa(qkv_[0], qkv_[1], qkv_[2]);  // [B, H, T, d]
    return proj->forward(out.transpose(1, 2).reshape({B, T, D}));
}

VitMlpBlockImpl::VitMlpBlockImpl(int64_t dim, int64_t hidden, VitMlp kind) : kind(kind) {
    if (kind == VitMlp::swiglu_packed && hidden % 2 != 0)
        throw std::invalid_argument("vit: a packed SwiGLU needs an even fc1 width, not " + std::to_string(hidden));
    fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
    fc2 = register_module("fc2", torch::nn::Linear(kind == VitMlp::swiglu_packed ? hidden / 2 : hidden, dim));
}

torch::Tensor VitMlpBlockImpl::forward(const torch::Tensor& x) {
    auto h = fc1->forward(x);
    // Without gradients the activation overwrites fc1's output: the hidden [B, T, mlp_hidden] is
    // the block's largest tensor (ViT-B/16, batch 64: 155 MB), and a second copy is not needed.
    const bool in_place = !torch::GradMode::is_enabled();
    if (kind == VitMlp::gelu) return fc2->forward(in_place ? at::gelu_out(h, h) : torch::gelu(h));
    auto halves = h.chunk(2, -1);
    return fc2->forward(in_place ? torch::silu_(halves[0]).mul_(halves[1]) : torch::silu(halves[0]) * halves[1]);
}

VitBlockImpl::VitBlockImpl(const VitOptions& o) {
    auto ln = [&] { return torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim}).eps(o.eps)); };
    // Registration order is timm's, so state_dict_of lists the keys as timm's state_dict does.
    norm1 = register_module("norm1", ln());
    attn = register_module("attn", VitAttention(o.dim, o.heads, o.qkv_bias));
    if (o.layer_scale) ls1 = register_module("ls1", VitLayerScale(o.dim));
    norm2 = register_module("norm2", ln());
    mlp = register_module("mlp", VitMlpBlock(o.dim, o.mlp_hidden, o.mlp));
    if (o.layer_scale) ls2 = register_module("ls2", VitLayerScale(o.dim));
}

torch::Tensor VitBlockImpl::forward(torch::Tensor x) {
    auto a = attn->forward(norm1->forward(x));
    x = x + (ls1 ? ls1->forward(a) : a);
    auto m = mlp->forward(norm2->forward(x));
    return x + (ls2 ? ls2->forward(m) : m);
}

VitAttnPoolImpl::VitAttnPoolImpl(int64_t dim, int64_t pool_dim, int64_t heads_) : heads(heads_) {
    if (pool_dim % heads != 0)
        throw std::invalid_argument("vit: pool_dim " + std::to_string(pool_dim) + " is not a multiple of pool_heads " +
                                    std::to_string(heads));
    // Registration order is CONCH's: query, attn, ln_q, ln_k.
    query = register_parameter("query", torch::randn({1, pool_dim}));
    attn = register_module("attn", std::make_shared<torch::nn::Module>());
    const double bound = 1.0 / std::sqrt(static_cast<double>(dim));
    q_proj_weight = attn->register_parameter("q_proj_weight", torch::empty({pool_dim, pool_dim}).uniform_(-bound, bound));
    k_proj_weight = attn->register_parameter("k_proj_weight", torch::empty({pool_dim, dim}).uniform_(-bound, bound));
    v_proj_weight = attn->register_parameter("v_proj_weight", torch::empty({pool_dim, dim}).uniform_(-bound, bound));
    in_proj_bias = attn->register_parameter("in_proj_bias", torch::zeros({3 * pool_dim}));
    out_proj = attn->register_module("out_proj", torch::nn::Linear(pool_dim, pool_dim));
    // nn.LayerNorm's default eps, which CONCH keeps.
    ln_q = register_module("ln_q", torch::nn::LayerNorm(torch::nn::LayerNormOptions({pool_dim}).eps(1e-5)));
    ln_k = register_module("ln_k", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)));
}

torch::Tensor VitAttnPoolImpl::forward(const torch::Tensor& tokens) {
    const int64_t B = tokens.size(0), T = tokens.size(1), P = query.size(1), d = P / heads;
    const auto x = ln_k->forward(tokens);
    const auto b = in_proj_bias.chunk(3);
    const auto q = torch::nn::functional::linear(ln_q->forward(query), q_proj_weight, b[0]);  // [1, P]
    const auto k = torch::nn::functional::linear(x, k_proj_weight, b[1]);                       // [B, T, P]
    const auto v = torch::nn::functional::linear(x, v_proj_weight, b[2]);
    const auto qh = q.view({1, 1, heads, d}).transpose(1, 2).expand({B, heads, 1, d});
    const auto kh = k.view({B, T, heads, d}).transpose(1, 2), vh = v.view({B, T, heads, d}).transpose(1, 2);
    const auto out = compat::attention_sdpa(qh, kh, vh);  // [B, heads, 1, d]
    return out_proj->forward(out.transpose(1, 2).reshape({B, P}));
}

VitAttnPoolKvImpl::VitAttnPoolKvImpl(int64_t dim, int64_t pool_dim, int64_t heads_) : heads(heads_) {
    if (pool_dim % heads != 0)
        throw std::invalid_argument("vit: pool_dim " + std::to_string(pool_dim) + " is not a multiple of pool_heads " +
                                    std::to_string(heads));
    // Registration order is CONCH v1.5's; its LayerNorms keep nn.LayerNorm's eps.
    query = register_parameter("query", torch::randn({1, pool_dim}));
    ln_k = register_module("ln_k", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(1e-5)));
    ln_q = register_module("ln_q", torch::nn::LayerNorm(torch::nn::LayerNormOptions({pool_dim}).eps(1e-5)));
    to_q = register_module("to_q", torch::nn::Linear(torch::nn::LinearOptions(pool_dim, pool_dim).bias(false)));
    to_kv = register_module("to_kv", torch::nn::Linear(torch::nn::LinearOptions(dim, 2 * pool_dim).bias(false)));
    to_out = register_module("to_out", torch::nn::Linear(torch::nn::LinearOptions(pool_dim, pool_dim).bias(false)));
}

torch::Tensor VitAttnPoolKvImpl::forward(const torch::Tensor& tokens) {
    const int64_t B = tokens.size(0), T = tokens.size(1), P = query.size(1), d = P / heads;
    const auto q = to_q->forward(ln_q->forward(query));  // [1, P]
    const auto kv = to_kv->forward(ln_k->forward(tokens)).chunk(2, -1);
    const auto qh = q.view({1, 1, heads, d}).transpose(1, 2).expand({B, heads, 1, d});
    const auto kh = kv[0].reshape({B, T, heads, d}).transpose(1, 2), vh = kv[1].reshape({B, T, heads, d}).transpose(1, 2);
    const auto out = compat::attention_sdpa(qh, kh, vh);  // [B, heads, 1, d]
    return to_out->forward(out.transpose(1, 2).reshape({B, P}));
}

VitImpl::VitImpl(const VitOptions& o) : opt(o) {
    if (o.img_size % o.patch_size != 0)
        throw std::invalid_argument("vit: img_size " + std::to_string(o.img_size) + " is not a multiple of patch_size " +
                                    std::to_string(o.patch_size));
    if ((o.pool == VitPool::cls || o.pool == VitPool::cls_mean) && !o.class_token)
        throw std::invalid_argument("vit: pooling by the class token needs class_token");
    const int64_t grid = o.img_size / o.patch_size;
    patch_embed = register_module("patch_embed", VitPatchEmbed(o.in_chans, o.dim, o.patch_size));
    if (o.class_token) cls_token = register_parameter("cls_token", torch::randn({1, 1, o.dim}) * 1e-6);
    if (o.reg_tokens > 0) reg_token = register_parameter("reg_token", torch::randn({1, o.reg_tokens, o.dim}) * 1e-6);
    const int64_t pos_len = grid * grid + (o.no_embed_class ? 0 : prefix_tokens());
    pos_embed = register_parameter("pos_embed", torch::randn({1, pos_len, o.dim}) * 0.02);
    blocks = register_module("blocks", torch::nn::ModuleList());
    for (int64_t k = 0; k < o.depth; ++k) blocks->push_back(VitBlock(o));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.dim}).eps(o.eps)));
    if (o.pool == VitPool::attn_pool || o.pool == VitPool::attn_pool_kv) {
        if (o.pool == VitPool::attn_pool)
            attn_pool_contrast = register_module("attn_pool_contrast", VitAttnPool(o.dim, o.pool_dim, o.pool_heads));
        else
            attn_pool_contrast_kv = register_module("attn_pool_contrast", VitAttnPoolKv(o.dim, o.pool_dim, o.pool_heads));
        ln_contrast = register_module("ln_contrast", torch::nn::LayerNorm(torch::nn::LayerNormOptions({o.pool_dim}).eps(1e-5)));
    }
}

torch::Tensor vit_pos_embed_resample(const torch::Tensor& pos, int64_t prefix, int64_t rows, int64_t cols, VitResample how) {
    const int64_t n = pos.size(1) - prefix, dim = pos.size(2);
    const auto g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
    if (g * g != n) throw std::invalid_argument("vit: pos_embed holds " + std::to_string(n) + " patch positions, not a square grid");
    if (g == rows && g == cols) return pos;
    namespace F = torch::nn::functional;
    auto grid = pos.slice(1, prefix).reshape({1, g, g, dim}).permute({0, 3, 1, 2}).to(torch::kFloat32);
    if (how == VitResample::bicubic_dino) {
        // As F.interpolate(scale_factor=...) without recomputing it: the kernel maps output
        // pixels back by the scale given, not by the size ratio. The 0.1 is DINO's guard against
        // the floor of grid * scale landing one short.
        const double sh = (rows + 0.1) / g, sw = (cols + 0.1) / g;
        grid = at::upsample_bicubic2d(grid, {static_cast<int64_t>(std::floor(g * sh)), static_cast<int64_t>(std::floor(g * sw))},
                                      false, sh, sw);
    } else {
        auto opts = F::InterpolateFuncOptions().size(std::vector<int64_t>{rows, cols}).align_corners(false);
        if (how == VitResample::bilinear) opts.mode(torch::kBilinear);
        else opts.mode(torch::kBicubic).antialias(how == VitResample::bicubic);
        grid = F::interpolate(grid, opts);
    }
    grid = grid.permute({0, 2, 3, 1}).reshape({1, rows * cols, dim}).to(pos.scalar_type());
    return prefix > 0 ? torch::cat({pos.slice(1, 0, prefix), grid}, 1) : grid;
}

torch::Tensor VitImpl::tokens(const torch::Tensor& x) {
    if (x.dim() != 4 || x.size(1) != opt.in_chans || x.size(2) % opt.patch_size != 0 || x.size(3) % opt.patch_size != 0)
        throw std::invalid_argument("vit: input must be [B, " + std::to_string(opt.in_chans) + ", H, W] with H and W multiples of " +
                                    std::to_string(opt.patch_size) + ", got " + c10::str(x.sizes()));
    const int64_t B = x.size(0), rows = x.size(2) / opt.patch_size, cols = x.size(3) / opt.patch_size;
    std::optional<RuntimeGemmBound> gemm_bound;  // a ViT is nearly all GEMMs (runtime.h)
    if (x.is_cpu() && !torch::GradMode::is_enabled()) gemm_bound.emplace();
    auto t = patch_embed->forward(x);  // [B, rows * cols, dim]
    const int64_t prefix = opt.no_embed_class ? 0 : prefix_tokens();
    auto pos = vit_pos_embed_resample(pos_embed, prefix, rows, cols, opt.pos_resample);
    std::vector<torch::Tensor> parts;
    if (opt.class_token) parts.push_back(cls_token.expand({B, -1, -1}));
    if (opt.reg_tokens > 0) parts.push_back(reg_token.expand({B, -1, -1}));
    if (opt.no_embed_class) {
        parts.push_back(t + pos);
        t = torch::cat(parts, 1);
    } else {
        parts.push_back(t);
        t = torch::cat(parts, 1) + pos;
    }
    // On the CPU without gradients, the batch goes through each block in slices: a block's
    // temporaries (qkv, the attention scores [n, heads, T, T], the MLP's hidden) then grow with the
    // slice, not the batch. For a ViT-B/16 at batch 64 the scores alone are 119 MB per copy, and
    // runtime_configure keeps freed memory on the heap, so a peak stays resident.
    constexpr int64_t kSlice = 16;
    const bool cpu_inference = t.is_cpu() && !torch::GradMode::is_enabled();
    const bool sliced = cpu_inference && B > kSlice;
    for (const auto& block : *blocks) {
        auto* b = block->as<VitBlock>();
        if (!sliced) {
            t = b->forward(t);
            continue;
        }
        auto out = torch::empty_like(t);
        for (int64_t s = 0; s < B; s += kSlice) {
            const int64_t n = std::min(kSlice, B - s);
            out.narrow(0, s, n).copy_(b->forward(t.narrow(0, s, n)));
        }
        t = out;
    }
    return norm->forward(t);
}

torch::Tensor VitImpl::forward(const torch::Tensor& x) {
    auto t = tokens(x);
    auto patches = t.slice(1, prefix_tokens());
    switch (opt.pool) {
        case VitPool::cls: return t.select(1, 0);
        case VitPool::cls_mean: return torch::cat({t.select(1, 0), patches.mean(1)}, -1);
        case VitPool::mean: return patches.mean(1);
        case VitPool::attn_pool: return ln_contrast->forward(attn_pool_contrast->forward(t));
        case VitPool::attn_pool_kv: return ln_contrast->forward(attn_pool_contrast_kv->forward(t));
    }
    return t.select(1, 0);
}

// The presets. Architectures as the models' own configs give them (timm model_args in their
// repositories, TRIDENT's patch_encoder_models/load.py); the transforms as their model cards give them.
namespace {

const std::vector<double> kImagenetMean{0.485, 0.456, 0.406}, kImagenetStd{0.229, 0.224, 0.225};

VitOptions vit_of(int64_t dim, int64_t depth, int64_t heads, int64_t mlp_hidden, int64_t patch, int64_t img = 224) {
    VitOptions o;
    o.dim = dim, o.depth = depth, o.heads = heads, o.mlp_hidden = mlp_hidden, o.patch_size = patch, o.img_size = img;
    return o;
}

VitOptions with(VitOptions o, VitMlp mlp, bool layer_scale, int64_t regs, bool no_embed_class, VitPool pool = VitPool::cls) {
    o.mlp = mlp, o.layer_scale = layer_scale, o.reg_tokens = regs, o.no_embed_class = no_embed_class, o.pool = pool;
    return o;
}

std::vector<VitPreset> presets_make() {
    using M = VitMlp;
    std::vector<VitPreset> p;
    auto add = [&](std::string name, std::string from, VitOptions o, std::vector<double> mean, std::vector<double> std,
                   int64_t resize = 224) {
        VitPreset v;
        v.name = std::move(name), v.weights_from = std::move(from), v.vit = o;
        v.mean = std::move(mean), v.std = std::move(std), v.resize = resize;
        p.push_back(std::move(v));
    };
    // ViT-L/16 with LayerScale.
    add("uni", "MahmoodLab/UNI pytorch_model.bin", with(vit_of(1024, 24, 16, 4096, 16), M::gelu, true, 0, false),
        kImagenetMean, kImagenetStd);
    // 1536 wide, 24 blocks, SwiGLU (fc1 8192 = 1536 x 5.33334), 8 registers outside pos_embed.
    add("uni2-h", "MahmoodLab/UNI2-h pytorch_model.bin", with(vit_of(1536, 24, 24, 8192, 14), M::swiglu_packed, true, 8, true),
        kImagenetMean, kImagenetStd);
    // ViT-H/14, SwiGLU with mlp_ratio 5.3375 (fc1 6832); output concat(CLS, mean of patch tokens).
    add("virchow", "paige-ai/Virchow pytorch_model.bin",
        with(vit_of(1280, 32, 16, 6832, 14), M::swiglu_packed, true, 0, false, VitPool::cls_mean), kImagenetMean, kImagenetStd);
    p.back().bicubic = true;
    // Virchow2 adds 4 registers, inside pos_embed (no_embed_class false).
    add("virchow2", "paige-ai/Virchow2 pytorch_model.bin",
        with(vit_of(1280, 32, 16, 6832, 14), M::swiglu_packed, true, 4, false, VitPool::cls_mean), kImagenetMean, kImagenetStd);
    p.back().bicubic = true;
    // ViT-g/14 with 4 registers in the DINOv2 layout; its own normalisation.
    const std::vector<double> hopt_mean{0.707223, 0.578729, 0.703617}, hopt_std{0.211883, 0.230117, 0.177517};
    add("h-optimus-0", "bioptimus/H-optimus-0 pytorch_model.bin",
        with(vit_of(1536, 40, 24, 8192, 14), M::swiglu_packed, true, 4, true), hopt_mean, hopt_std);
    add("h-optimus-1", "bioptimus/H-optimus-1 pytorch_model.bin",
        with(vit_of(1536, 40, 24, 8192, 14), M::swiglu_packed, true, 4, true), hopt_mean, hopt_std);
    // ViT-g at patch 16, class token inside pos_embed; resize 256 then centre crop 224.
    add("gigapath", "prov-gigapath/prov-gigapath pytorch_model.bin",
        with(vit_of(1536, 40, 24, 8192, 16), M::swiglu_packed, true, 0, false), kImagenetMean, kImagenetStd, 256);
    p.back().bicubic = true;
    // CONCH v1 (conch_ViT-B-16): a timm ViT-B/16 at 448, then the contrastive attentional pooler
    // (one query, 8 heads, 768 -> 512) and its LayerNorm, as TRIDENT calls it
    // (encode_image(proj_contrast=False, normalize=False)); OpenAI CLIP's mean and std, bicubic.
    {
        VitOptions o = vit_of(768, 12, 12, 3072, 16, 448);
        o.pool = VitPool::attn_pool, o.pool_dim = 512, o.pool_heads = 8;
        add("conch-v1", "MahmoodLab/CONCH pytorch_model.bin", o, {0.48145466, 0.4578275, 0.40821073},
            {0.26862954, 0.26130258, 0.27577711}, 448);
        p.back().input_size = 448;
        p.back().bicubic = true;
        p.back().file_layout = "conch";
    }
    // CONCH v1.5 (TRIDENT's conchv1_5.py): an iBOT-style ViT-L/16 with LayerScale built at 224,
    // whose file's pos_embed is fitted to 14 x 14 at load (bilinear) and resampled to the 28 x 28
    // of its 448 input at run time (DINO's bicubic by scale factor); then its own attentional
    // pooler (1024 -> 768, 8 heads) and LayerNorm. Bilinear resize, ImageNet mean and std.
    {
        VitOptions o = with(vit_of(1024, 24, 16, 4096, 16), M::gelu, true, 0, false, VitPool::attn_pool_kv);
        o.pool_dim = 768, o.pool_heads = 8, o.pos_resample = VitResample::bicubic_dino, o.pos_load = VitPosLoad::resample;
        add("conch-v1.5", "MahmoodLab/conchv1_5 pytorch_model_vision.bin", o, kImagenetMean, kImagenetStd, 448);
        p.back().input_size = 448;
        p.back().file_layout = "conch_v15";
    }
    // Hugging Face ViTModel (ViT-B/16), LayerNorm eps 1e-12 from its config.
    {
        VitOptions o = vit_of(768, 12, 12, 3072, 16);
        o.eps = 1e-12;
        add("phikon", "owkin/phikon model.safetensors", o, kImagenetMean, kImagenetStd);
        p.back().file_layout = "hf_vit";
    }
    // Hugging Face Dinov2Model files (config.json: layerscale_value, layer_norm_eps 1e-6, no
    // SwiGLU). Phikon-v2 is a ViT-L/16 at 224. Hibou's ViT-B/14 and ViT-L/14 add 4 registers;
    // their file gives the class token a position embedding, which the load folds into the token
    // (registers outside pos_embed, as timm's no_embed_class), and a bicubic resize. The grid of
    // pos_embed is the file's (its config's image_size), resampled per input as transformers does.
    auto dinov2 = [&](std::string name, std::string from, VitOptions o, std::vector<double> mean, std::vector<double> std) {
        o.pos_resample = VitResample::bicubic_hf, o.pos_load = VitPosLoad::adopt;
        add(std::move(name), std::move(from), o, std::move(mean), std::move(std));
        p.back().file_layout = "hf_dinov2";
    };
    dinov2("phikon-v2", "owkin/phikon-v2 model.safetensors", with(vit_of(1024, 24, 16, 4096, 16), M::gelu, true, 0, false),
           kImagenetMean, kImagenetStd);
    const std::vector<double> hibou_mean{0.7068, 0.5755, 0.722}, hibou_std{0.195, 0.2316, 0.1816};
    dinov2("hibou-b", "histai/hibou-b model.safetensors", with(vit_of(768, 12, 12, 3072, 14), M::gelu, true, 4, true),
           hibou_mean, hibou_std);
    p.back().bicubic = true;
    dinov2("hibou-l", "histai/hibou-L model.safetensors", with(vit_of(1024, 24, 16, 4096, 14), M::gelu, true, 4, true),
           hibou_mean, hibou_std);
    p.back().bicubic = true;
    // Kaiko's ViTs (timm names as TRIDENT builds them): S/16 and B/16 plain at 224; L/14 is the
    // DINOv2 layout with 4 registers and LayerScale, built at 518 (pos_embed 37 x 37) and run at 224.
    const std::vector<double> half{0.5, 0.5, 0.5};
    add("kaiko-vits16", "1aurent/vit_small_patch16_224.kaiko_ai_towards_large_pathology_fms model.safetensors",
        vit_of(384, 12, 6, 1536, 16), half, half);
    add("kaiko-vitb16", "1aurent/vit_base_patch16_224.kaiko_ai_towards_large_pathology_fms model.safetensors",
        vit_of(768, 12, 12, 3072, 16), half, half);
    add("kaiko-vitl14", "1aurent/vit_large_patch14_reg4_dinov2.kaiko_ai_towards_large_pathology_fms model.safetensors",
        with(vit_of(1024, 24, 16, 4096, 14, 518), M::gelu, true, 4, true), half, half);
    return p;
}

}  // namespace

const std::vector<VitPreset>& vit_presets() {
    static const std::vector<VitPreset> all = presets_make();
    return all;
}

std::string vit_preset_names() {
    std::string known;
    for (const auto& p : vit_presets()) known += (known.empty() ? "" : ", ") + p.name;
    return known;
}

const VitPreset& vit_preset(const std::string& name) {
    for (const auto& p : vit_presets())
        if (p.name == name) return p;
    throw std::invalid_argument("unknown ViT encoder '" + name + "' (known: " + vit_preset_names() + ")");
}

VitOptions vit_preset_options(const VitPreset& p, int64_t depth) {
    VitOptions o = p.vit;
    if (depth > 0) o.depth = depth;
    return o;
}

torch::Tensor vit_preset_transform(const VitPreset& p, const torch::Tensor& x) {
    if (x.dim() != 4 || x.size(1) != static_cast<int64_t>(p.mean.size()))
        throw std::invalid_argument("vit '" + p.name + "': the transform takes [n, " + std::to_string(p.mean.size()) +
                                    ", h, w] pixels, got " + c10::str(x.sizes()));
    namespace F = torch::nn::functional;
    torch::Tensor y = x.to(torch::kFloat32);
    int64_t h = y.size(2), w = y.size(3);
    if (std::min(h, w) != p.resize) {
        // torchvision: the shorter side becomes `resize`, the longer keeps the aspect (truncated).
        const int64_t nh = h <= w ? p.resize : p.resize * h / w, nw = h <= w ? p.resize * w / h : p.resize;
        auto opts = F::InterpolateFuncOptions().size(std::vector<int64_t>{nh, nw}).align_corners(false).antialias(true);
        if (p.bicubic) opts.mode(torch::kBicubic);
        else opts.mode(torch::kBilinear);
        y = F::interpolate(y, opts);
        h = nh, w = nw;
    }
    const int64_t crop = p.input_size;
    if (h < crop || w < crop)
        throw std::invalid_argument("vit '" + p.name + "': a " + std::to_string(h) + "x" + std::to_string(w) +
                                    " input is smaller than its " + std::to_string(crop) + " crop");
    if (h != crop || w != crop) {
        const auto top = static_cast<int64_t>(std::nearbyint((h - crop) / 2.0));
        const auto left = static_cast<int64_t>(std::nearbyint((w - crop) / 2.0));
        y = y.slice(2, top, top + crop).slice(3, left, left + crop);
    }
    const auto opts = y.options();
    const auto mean = torch::tensor(p.mean, torch::kFloat64).to(opts).view({1, -1, 1, 1});
    const auto std = torch::tensor(p.std, torch::kFloat64).to(opts).view({1, -1, 1, 1});
    return (y - mean) / std;
}

}  // namespace ips
