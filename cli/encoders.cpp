// ips encoders: the ViT presets (vit.h) with their architecture, input pipeline, output width and
// parameter count, so users can see what a name builds before pointing it at a weight file.
#include <nlohmann/json.hpp>

#include <cstdio>

#include "command.h"
#include "ips/vit.h"

namespace ips::cli {
namespace {

// The names the peer tests use (tests/peer/vit_slide_peer.py's ARCH.json).
nlohmann::json preset_json(const VitPreset& p) {
    const VitOptions& o = p.vit;
    const char* pools[] = {"cls", "cls_mean", "mean", "attn_pool", "attn_pool_kv"};
    const char* resamples[] = {"bicubic", "bicubic_hf", "bicubic_dino", "bilinear"};
    const char* pos_loads[] = {"exact", "resample", "adopt"};
    return {{"name", p.name}, {"weights_from", p.weights_from}, {"dim", o.dim}, {"depth", o.depth},
            {"heads", o.heads}, {"mlp_hidden", o.mlp_hidden},
            {"mlp", o.mlp == VitMlp::gelu ? "gelu" : "swiglu_packed"}, {"patch", o.patch_size},
            {"img", o.img_size}, {"cls", o.class_token}, {"regs", o.reg_tokens},
            {"no_embed_class", o.no_embed_class}, {"layer_scale", o.layer_scale}, {"eps", o.eps},
            {"pool", pools[static_cast<int>(o.pool)]}, {"pool_dim", o.pool_dim}, {"pool_heads", o.pool_heads},
            {"keys", p.file_layout}, {"pos_resample", resamples[static_cast<int>(o.pos_resample)]},
            {"pos_load", pos_loads[static_cast<int>(o.pos_load)]},
            {"out_dim", vit_out_dim(o)}, {"tile", p.resize}, {"resize", p.resize}, {"input", p.input_size},
            {"bicubic", p.bicubic}, {"mean", p.mean}, {"std", p.std}, {"mpp", p.mpp}};
}

// From the shapes the module registers: building a ViT-g to count it would take 4.5 GB.
// tests/cli/encoders_test.cpp checks the count against the built module and the peer.
int64_t preset_params(const VitOptions& o) {
    const int64_t d = o.dim, grid = (o.img_size / o.patch_size) * (o.img_size / o.patch_size);
    const int64_t prefix = (o.class_token ? 1 : 0) + o.reg_tokens;
    int64_t n = o.in_chans * o.patch_size * o.patch_size * d + d;  // patch_embed.proj
    n += prefix * d + (grid + (o.no_embed_class ? 0 : prefix)) * d;  // tokens, pos_embed
    const int64_t fc2_in = o.mlp == VitMlp::swiglu_packed ? o.mlp_hidden / 2 : o.mlp_hidden;
    int64_t block = 4 * d;                                      // norm1, norm2
    block += 3 * d * d + (o.qkv_bias ? 3 * d : 0) + d * d + d;  // attn.qkv, attn.proj
    block += d * o.mlp_hidden + o.mlp_hidden + fc2_in * d + d;  // mlp.fc1, mlp.fc2
    if (o.layer_scale) block += 2 * d;
    n += o.depth * block + 2 * d;  // + the final norm
    if (o.pool == VitPool::attn_pool) {  // query, ln_q, ln_k, q/k/v projections, biases, out_proj, ln_contrast
        const int64_t P = o.pool_dim;
        n += P + 2 * P + 2 * d + P * P + 2 * P * d + 3 * P + P * P + P + 2 * P;
    }
    if (o.pool == VitPool::attn_pool_kv) {  // query, ln_k, ln_q, to_q, to_kv, to_out (no biases), ln_contrast
        const int64_t P = o.pool_dim;
        n += P + 2 * d + 2 * P + P * P + 2 * P * d + P * P + 2 * P;
    }
    return n;
}

void encoders_setup(CLI::App* sub) {
    auto names = std::make_shared<std::vector<std::string>>();
    auto json = std::make_shared<bool>(false);
    sub->add_option("names", *names, "presets to show (default: all)");
    sub->add_flag("--json", *json, "one JSON object per preset per line");
    sub->callback([names, json] {
        std::vector<const VitPreset*> shown;
        if (names->empty())
            for (const auto& p : vit_presets()) shown.push_back(&p);
        for (const auto& n : *names) shown.push_back(&vit_preset(n));
        if (!*json)
            std::printf("%-14s %5s %6s %5s %8s %9s %6s  %s\n", "name", "dim", "blocks", "out", "input", "params", "mpp",
                        "weights");
        for (const VitPreset* p : shown) {
            auto j = preset_json(*p);
            j["params"] = preset_params(p->vit);
            if (*json) {
                std::printf("%s\n", j.dump().c_str());
                continue;
            }
            std::printf("%-14s %5lld %6lld %5lld %4lld/%-3lld %8.1fM %6.2f  %s\n", p->name.c_str(),
                        static_cast<long long>(p->vit.dim), static_cast<long long>(p->vit.depth),
                        static_cast<long long>(vit_out_dim(p->vit)), static_cast<long long>(p->resize),
                        static_cast<long long>(p->input_size), j["params"].get<int64_t>() / 1e6, p->mpp,
                        p->weights_from.c_str());
        }
    });
}

const CommandRegistration kEncoders{
    {"encoders", "the ViT presets: architecture, input, output width, parameters (ips encoders [NAME] [--json])",
     encoders_setup, 75}};

}  // namespace
}  // namespace ips::cli
