#include "ips/vit_weights.h"

#include <cmath>
#include <map>
#include <stdexcept>

#include "ips/safetensors.h"

namespace ips {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Drops one of the wrappers model repositories put around the trunk, once per kind.
std::string prefix_strip(std::string key) {
    for (const char* p : {"module.", "model.", "visual.trunk.", "trunk.", "visual.", "vit.", "dinov2."})
        if (starts_with(key, p)) key = key.substr(std::string(p).size());
    return key;
}

// A classifier head, Hugging Face's pooler and mask token; and CONCH's parts that are not its
// image features: the text tower, the captioning pooler and the contrastive projection.
bool outside_trunk(const std::string& key) {
    for (const char* p : {"head.", "pooler.", "text.", "text_decoder.", "attn_pool_caption.", "ln_caption."})
        if (starts_with(key, p)) return true;
    return key == "embeddings.mask_token" || key == "proj_contrast" || key == "logit_scale";
}

// Hugging Face ViTModel and Dinov2Model names -> timm's; "" for query / key / value, which are
// joined into qkv. The two models' block names do not collide, so one table serves both.
std::string hf_key_to_timm(const std::string& key) {
    static const std::vector<std::pair<std::string, std::string>> whole{
        {"embeddings.cls_token", "cls_token"},
        {"embeddings.position_embeddings", "pos_embed"},
        {"embeddings.register_tokens", "reg_token"},
    };
    for (const auto& [from, to] : whole)
        if (key == from) return to;
    if (starts_with(key, "embeddings.patch_embeddings.projection."))
        return "patch_embed.proj." + key.substr(std::string("embeddings.patch_embeddings.projection.").size());
    if (starts_with(key, "layernorm.")) return "norm." + key.substr(10);
    if (!starts_with(key, "encoder.layer.")) return key;  // left as is: the load names it as unexpected
    const std::string rest = key.substr(14);                // "N.attention.output.dense.weight"
    const auto dot = rest.find('.');
    if (dot == std::string::npos) return key;
    const std::string block = "blocks." + rest.substr(0, dot) + ".", inner = rest.substr(dot + 1);
    static const std::vector<std::pair<std::string, std::string>> parts{
        // ViTModel
        {"layernorm_before.", "norm1."}, {"layernorm_after.", "norm2."}, {"attention.output.dense.", "attn.proj."},
        {"intermediate.dense.", "mlp.fc1."}, {"output.dense.", "mlp.fc2."},
        // Dinov2Model: LayerScale, and the SwiGLU MLP's packed halves (use_swiglu_ffn)
        {"norm1.", "norm1."}, {"norm2.", "norm2."}, {"mlp.fc1.", "mlp.fc1."}, {"mlp.fc2.", "mlp.fc2."},
        {"mlp.weights_in.", "mlp.fc1."}, {"mlp.weights_out.", "mlp.fc2."},
        {"layer_scale1.lambda1", "ls1.gamma"}, {"layer_scale2.lambda1", "ls2.gamma"},
    };
    for (const auto& [from, to] : parts)
        if (starts_with(inner, from)) return block + to + inner.substr(from.size());
    if (starts_with(inner, "attention.attention.")) return "";
    return key;
}

torch::Tensor* entry(NamedTensors& sd, const std::string& key) {
    for (auto& [k, t] : sd)
        if (k == key) return &t;
    return nullptr;
}

// Dinov2Model with registers adds position_embeddings to [cls, patches] and puts the registers
// between them afterwards, so the class token's position embedding is a constant added to it:
// folded into cls_token, the rest is timm's no_embed_class pos_embed (patches only). Exact, and
// resampling for another grid touches the patch part only in both.
void class_position_fold(NamedTensors& sd) {
    torch::Tensor *cls = entry(sd, "cls_token"), *pos = entry(sd, "pos_embed");
    if (!entry(sd, "reg_token") || !cls || !pos || pos->dim() != 3 || pos->size(1) < 1) return;
    *cls = cls->to(torch::kFloat32) + pos->slice(1, 0, 1).to(torch::kFloat32);
    *pos = pos->slice(1, 1).contiguous();
}

}  // namespace

NamedTensors vit_keys_timm(const NamedTensors& sd, VitKeys layout) {
    NamedTensors stripped;
    bool hf = layout == VitKeys::hf_vit;
    for (const auto& [key, t] : sd) {
        std::string k = prefix_strip(key);
        if (layout == VitKeys::automatic && starts_with(k, "embeddings.patch_embeddings.")) hf = true;
        stripped.emplace_back(std::move(k), t);
    }
    NamedTensors out;
    // "blocks.N.attn.qkv.weight" -> {query, key, value} as they come.
    std::map<std::string, std::map<std::string, torch::Tensor>> qkv;
    std::vector<std::string> qkv_order;
    for (const auto& [key, t] : stripped) {
        if (outside_trunk(key)) continue;
        if (!hf) {
            out.emplace_back(key, t);
            continue;
        }
        const std::string k = hf_key_to_timm(key);
        if (!k.empty()) {
            out.emplace_back(k, t);
            continue;
        }
        // encoder.layer.N.attention.attention.{query,key,value}.{weight,bias}
        const std::string rest = key.substr(14);
        const std::string n = rest.substr(0, rest.find('.'));
        const std::string tail = rest.substr(rest.find("attention.attention.") + 20);  // "query.weight"
        const std::string which = tail.substr(0, tail.find('.')), param = tail.substr(tail.find('.') + 1);
        const std::string target = "blocks." + n + ".attn.qkv." + param;
        if (!qkv.count(target)) qkv_order.push_back(target);
        qkv[target][which] = t;
    }
    for (const auto& target : qkv_order) {
        auto& parts = qkv[target];
        for (const char* w : {"query", "key", "value"})
            if (!parts.count(w))
                throw std::runtime_error("Hugging Face ViT weights: " + target + " lacks its " + w + " part");
        out.emplace_back(target, torch::cat({parts["query"], parts["key"], parts["value"]}, 0));
    }
    if (hf) class_position_fold(out);
    return out;
}

void vit_pos_embed_take(Vit& vit, torch::Tensor& pos, const std::string& path) {
    auto& o = vit->opt;
    const int64_t prefix = o.no_embed_class ? 0 : vit->prefix_tokens();
    if (o.pos_load == VitPosLoad::exact || pos.dim() != 3 || pos.size(2) != o.dim || pos.size(1) == vit->pos_embed.size(1))
        return;  // as it is: a mis-shape is named by the strict load
    const int64_t n = pos.size(1) - prefix, g = static_cast<int64_t>(std::llround(std::sqrt(static_cast<double>(n))));
    if (n <= 0 || g * g != n)
        throw std::runtime_error(path + ": pos_embed " + c10::str(pos.sizes()) + " holds no square grid of positions after " +
                                 std::to_string(prefix) + " prefix tokens");
    if (o.pos_load == VitPosLoad::resample) {
        const int64_t grid = o.img_size / o.patch_size;
        pos = vit_pos_embed_resample(pos, prefix, grid, grid, VitResample::bilinear);
        return;
    }
    torch::NoGradGuard no_grad;
    vit->pos_embed.set_data(torch::zeros(pos.sizes(), vit->pos_embed.options()));
    o.img_size = g * o.patch_size;
}

void vit_load(Vit& vit, const std::string& path, VitKeys layout) {
    NamedTensors sd = vit_keys_timm(weights_read(path), layout);
    if (torch::Tensor* pos = entry(sd, "pos_embed")) vit_pos_embed_take(vit, *pos, path);
    state_dict_apply(*vit, sd, "", /*strict=*/true, path);
}

}  // namespace ips
