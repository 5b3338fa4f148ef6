#include "ips/vit_weights.h"

#include <map>
#include <stdexcept>

#include "ips/safetensors.h"

namespace ips {

namespace {

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

// Drops one of the wrappers model repositories put around the trunk, once per kind.
std::string prefix_strip(std::string key) {
    for (const char* p : {"module.", "model.", "visual.trunk.", "trunk.", "visual.", "vit."})
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

// Hugging Face ViTModel names -> timm's; "" for query / key / value, which are joined into qkv.
std::string hf_key_to_timm(const std::string& key) {
    static const std::vector<std::pair<std::string, std::string>> whole{
        {"embeddings.cls_token", "cls_token"},
        {"embeddings.position_embeddings", "pos_embed"},
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
        {"layernorm_before.", "norm1."},          {"layernorm_after.", "norm2."},
        {"attention.output.dense.", "attn.proj."}, {"intermediate.dense.", "mlp.fc1."},
        {"output.dense.", "mlp.fc2."},
    };
    for (const auto& [from, to] : parts)
        if (starts_with(inner, from)) return block + to + inner.substr(from.size());
    if (starts_with(inner, "attention.attention.")) return "";
    return key;
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
    return out;
}

void vit_load(Vit& vit, const std::string& path, VitKeys layout) {
    const NamedTensors sd = vit_keys_timm(weights_read(path), layout);
    state_dict_apply(*vit, sd, "", /*strict=*/true, path);
}

}  // namespace ips
