// Vision transformers as timm builds them (the trunks of the pathology foundation models: UNI,
// Virchow, H-optimus, Prov-GigaPath, CONCH, Phikon, Hibou, Kaiko), with timm's state-dict names so that the
// files users have load as they are: patch_embed.proj, cls_token, reg_token, pos_embed,
// blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}, norm.
// Any timm-style ViT is a VitOptions; the named models are presets (vit_preset) that add the
// transform the model was trained with and what it outputs.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>


namespace ips {

enum class VitMlp {
    gelu,           // fc1 -> GELU (erf) -> fc2
    swiglu_packed,  // fc1 (both halves in one matrix) -> SiLU(first half) * second half -> fc2
};

enum class VitPool {
    cls,       // the class token after the final norm: [B, dim]
    cls_mean,  // concat(class token, mean of the patch tokens, registers left out): [B, 2 dim] (Virchow)
    mean,      // mean of the patch tokens: [B, dim]
    attn_pool, // CONCH: one learned query attends over every token (attn_pool_contrast), then a
               // LayerNorm (ln_contrast): [B, pool_dim]
    attn_pool_kv, // CONCH v1.5: the same with its own pooler (to_q, to_kv, to_out, no biases)
};

// How pos_embed's patch part is brought to another grid than its own (vit_pos_embed_resample).
enum class VitResample {
    bicubic,       // timm's resample_abs_pos_embed at run time: bicubic, antialiased, to the grid's size
    bicubic_hf,    // Hugging Face Dinov2Model's interpolate_pos_encoding: bicubic to the size, no antialiasing
    bicubic_dino,  // DINO / iBOT's interpolate_pos_encoding (CONCH v1.5): bicubic without
                   // antialiasing, by the scale factor (grid + 0.1) / own grid
    bilinear,      // timm's resample at load time, as CONCH v1.5 loads its file: bilinear, no antialiasing
};

// What loading does with a file's pos_embed of another grid than the built one.
enum class VitPosLoad {
    exact,     // refused as mis-shaped, by name
    resample,  // resampled to the built grid (bilinear: CONCH v1.5, as its loader does)
    adopt,     // the trunk takes the file's grid, and pos_resample brings it to each input's
               // (Hugging Face files, whose config.json sets the grid with image_size)
};

struct VitOptions {
    int64_t img_size = 224;  // the grid pos_embed holds is img_size / patch_size a side; other
                             // inputs get it resampled by pos_resample
    int64_t patch_size = 16;
    int64_t in_chans = 3;
    int64_t dim = 768;
    int64_t depth = 12;
    int64_t heads = 12;
    int64_t mlp_hidden = 3072;  // fc1's output width; for swiglu_packed both halves together
    VitMlp mlp = VitMlp::gelu;
    bool class_token = true;
    int64_t reg_tokens = 0;       // register tokens, after the class token
    bool no_embed_class = false;  // pos_embed covers the patch tokens only (added before the prefix
                                  // tokens are joined); otherwise it covers [cls, registers, patches]
    bool layer_scale = false;     // ls1.gamma / ls2.gamma scale each residual branch
    bool qkv_bias = true;
    double eps = 1e-6;            // every LayerNorm (timm 1e-6; Hugging Face ViT configs 1e-12)
    VitPool pool = VitPool::cls;
    int64_t pool_dim = 512;  // attn_pool: the query's width (CONCH's embed_dim) and its heads
    int64_t pool_heads = 8;
    VitResample pos_resample = VitResample::bicubic;  // for inputs of another grid
    VitPosLoad pos_load = VitPosLoad::exact;
};

// Output width for the options' pooling.
int64_t vit_out_dim(const VitOptions& o);

struct VitPatchEmbedImpl : torch::nn::Module {
    VitPatchEmbedImpl(int64_t in_chans, int64_t dim, int64_t patch_size);
    torch::Tensor forward(const torch::Tensor& x);  // [B, C, H, W] -> [B, (H/p)(W/p), dim], row-major grid
    torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(VitPatchEmbed);

struct VitLayerScaleImpl : torch::nn::Module {
    explicit VitLayerScaleImpl(int64_t dim);
    torch::Tensor forward(const torch::Tensor& x) { return x * gamma; }
    torch::Tensor gamma;  // [dim]
};
TORCH_MODULE(VitLayerScale);

struct VitAttentionImpl : torch::nn::Module {
    VitAttentionImpl(int64_t dim, int64_t heads, bool qkv_bias);
    torch::Tensor forward(const torch::Tensor& x);  // [B, T, dim] -> [B, T, dim]
    int64_t heads;
    torch::nn::Linear qkv{nullptr}, proj{nullptr};
};
TORCH_MODULE(VitAttention);

struct VitMlpBlockImpl : torch::nn::Module {
    VitMlpBlockImpl(int64_t dim, int64_t hidden, VitMlp kind);
    torch::Tensor forward(const torch::Tensor& x);  // [B, T, dim] -> [B, T, dim]
    VitMlp kind;
    torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(VitMlpBlock);

struct VitBlockImpl : torch::nn::Module {
    explicit VitBlockImpl(const VitOptions& o);
    torch::Tensor forward(torch::Tensor x);  // [B, T, dim] -> [B, T, dim]
    torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
    VitAttention attn{nullptr};
    VitMlpBlock mlp{nullptr};
    VitLayerScale ls1{nullptr}, ls2{nullptr};  // null without layer_scale
};
TORCH_MODULE(VitBlock);

// CONCH's AttentionalPooler with torch's MultiheadAttention inside, under their names: one query
// [1, pool_dim] (ln_q), keys and values from the tokens (ln_k, kdim = vdim = dim), so the
// projections are separate (attn.q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias,
// out_proj). tokens [B, T, dim] -> [B, pool_dim].
struct VitAttnPoolImpl : torch::nn::Module {
    VitAttnPoolImpl(int64_t dim, int64_t pool_dim, int64_t heads);
    torch::Tensor forward(const torch::Tensor& tokens);
    int64_t heads;
    torch::Tensor query;
    std::shared_ptr<torch::nn::Module> attn;  // holds q/k/v_proj_weight, in_proj_bias, out_proj
    torch::Tensor q_proj_weight, k_proj_weight, v_proj_weight, in_proj_bias;
    torch::nn::Linear out_proj{nullptr};
    torch::nn::LayerNorm ln_q{nullptr}, ln_k{nullptr};
};
TORCH_MODULE(VitAttnPool);

// CONCH v1.5's AttentionalPooler: one query [1, pool_dim] (ln_q), keys and values from the tokens
// (ln_k) through to_kv, heads of pool_dim / heads, to_out; no biases. [B, T, dim] -> [B, pool_dim].
struct VitAttnPoolKvImpl : torch::nn::Module {
    VitAttnPoolKvImpl(int64_t dim, int64_t pool_dim, int64_t heads);
    torch::Tensor forward(const torch::Tensor& tokens);
    int64_t heads;
    torch::Tensor query;
    torch::nn::LayerNorm ln_k{nullptr}, ln_q{nullptr};
    torch::nn::Linear to_q{nullptr}, to_kv{nullptr}, to_out{nullptr};
};
TORCH_MODULE(VitAttnPoolKv);

struct VitImpl : torch::nn::Module {
    explicit VitImpl(const VitOptions& o);
    // [B, C, H, W] (H and W multiples of patch_size) -> every token after the final norm:
    // [B, prefix + (H/p)(W/p), dim], prefix = class token + registers.
    torch::Tensor tokens(const torch::Tensor& x);
    // [B, C, H, W] -> [B, vit_out_dim(opt)]
    torch::Tensor forward(const torch::Tensor& x);
    int64_t prefix_tokens() const { return (opt.class_token ? 1 : 0) + opt.reg_tokens; }

    VitOptions opt;
    VitPatchEmbed patch_embed{nullptr};
    torch::Tensor cls_token, reg_token, pos_embed;  // [1, 1, dim], [1, R, dim], [1, L, dim]
    torch::nn::ModuleList blocks{nullptr};
    torch::nn::LayerNorm norm{nullptr};
    VitAttnPool attn_pool_contrast{nullptr};       // pool attn_pool only
    VitAttnPoolKv attn_pool_contrast_kv{nullptr};  // pool attn_pool_kv only (named attn_pool_contrast)
    torch::nn::LayerNorm ln_contrast{nullptr};
};
TORCH_MODULE(Vit);

// pos_embed's patch part on a grid of (rows, columns) instead of its own square one, in float32,
// align_corners false, the way `how` names. pos: [1, prefix + g*g, dim] -> [1, prefix + rows*cols,
// dim]; the prefix rows are kept; returned as it is when the grid is its own.
torch::Tensor vit_pos_embed_resample(const torch::Tensor& pos, int64_t prefix, int64_t rows, int64_t cols,
                                     VitResample how = VitResample::bicubic);

// A named foundation model: its architecture, the transform its authors use and its output.
struct VitPreset {
    std::string name;         // "uni", "virchow2", ...
    std::string weights_from; // where users get the file (its usual name), for messages and docs
    VitOptions vit;
    // The key layout of the published file, for the docs and the peer tests (loading tells
    // layouts apart by their keys, vit_weights.h): timm, hf_vit (Hugging Face ViTModel), hf_dinov2
    // (Dinov2Model, with or without registers), conch (visual.trunk.), conch_v15 (trunk.).
    std::string file_layout = "timm";
    int64_t input_size = 224;  // the side the model sees
    int64_t resize = 224;      // shorter side resized to this first, then a centre crop of input_size
    bool bicubic = false;      // the resize's interpolation (torchvision's default is bilinear)
    std::vector<double> mean, std;  // per channel, applied to [0, 1] pixels
    double mpp = 0.5;          // µm per pixel of the tiles it was trained on (20x)
};

// Every preset, in a stable order; vit_preset throws naming the known ones for an unknown name.
const std::vector<VitPreset>& vit_presets();
const VitPreset& vit_preset(const std::string& name);
std::string vit_preset_names();  // "uni, uni2-h, ...", for messages

// The preset's architecture, with `depth` blocks instead of its own when depth > 0.
VitOptions vit_preset_options(const VitPreset& p, int64_t depth = 0);

// The preset's input pipeline on [0, 1] pixels, as torchvision's Resize(resize),
// CenterCrop(input_size) and Normalize(mean, std) do it on float tensors: the shorter side to
// `resize` (bilinear or bicubic, antialiased; skipped when it already is that), the centre crop
// (offsets rounded half to even, as Python's round), then (x - mean) / std per channel.
// x: [n, C, h, w] float -> [n, C, input_size, input_size]. Throws when a side is below the crop.
torch::Tensor vit_preset_transform(const VitPreset& p, const torch::Tensor& x);

// That pipeline as a module without parameters: the first step of an IPS encoder
// Sequential{VitTransform, Vit}, so patches arrive as every other encoder gets them.
struct VitTransformImpl : torch::nn::Module {
    explicit VitTransformImpl(VitPreset p) : preset(std::move(p)) {}
    torch::Tensor forward(const torch::Tensor& x) { return vit_preset_transform(preset, x); }
    VitPreset preset;
};
TORCH_MODULE(VitTransform);

}  // namespace ips
