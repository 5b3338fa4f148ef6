// The ViT trunk against an independent PyTorch ViT (tests/peer/vit_peer.py): the same weight
// files, in timm's, Hugging Face's (ViTModel, Dinov2Model) and CONCH's layouts and in bfloat16, give the same tokens and outputs;
// a file of another model names its keys; the presets have the published shapes.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "ips/safetensors.h"
#include "ips/torch_file.h"
#include "ips/vit.h"
#include "ips/vit_weights.h"
#include "test_support.h"

using namespace ips;
namespace fs = std::filesystem;

namespace {

struct Peer {
    test::TempDir dir{"ips_vit_peer"};
    nlohmann::json cases;
    std::string error;
};

const Peer& peer() {
    static Peer p;
    static bool made = false;
    if (!made) {
        made = true;
        const std::string cmd = "'" + test::torch_python() + "' '" + std::string(IPS_SOURCE_DIR) +
                                "/tests/peer/vit_peer.py' make '" + p.dir.path.string() + "' 2>&1";
        const auto r = test::command_run(cmd);
        if (r.code != 0) p.error = "tests/peer/vit_peer.py failed (python3-torch is needed): " + r.output;
        else p.cases = nlohmann::json::parse(std::ifstream(p.dir.path / "cases.json"));
    }
    return p;
}

VitOptions options_of(const nlohmann::json& c) {
    VitOptions o;
    o.dim = c["dim"], o.depth = c["depth"], o.heads = c["heads"], o.mlp_hidden = c["mlp_hidden"];
    o.mlp = c["mlp"] == "gelu" ? VitMlp::gelu : VitMlp::swiglu_packed;
    o.patch_size = c["patch"], o.img_size = c["img"], o.class_token = c["cls"], o.reg_tokens = c["regs"];
    o.no_embed_class = c["no_embed_class"], o.layer_scale = c["layer_scale"], o.eps = c["eps"];
    const std::string pool = c["pool"];
    const std::map<std::string, VitPool> pools{{"cls", VitPool::cls}, {"cls_mean", VitPool::cls_mean}, {"mean", VitPool::mean},
                                               {"attn_pool", VitPool::attn_pool}, {"attn_pool_kv", VitPool::attn_pool_kv}};
    o.pool = pools.at(c["pool"]);
    if (c.contains("pool_dim")) o.pool_dim = c["pool_dim"], o.pool_heads = c["pool_heads"];
    const std::map<std::string, VitResample> resamples{{"bicubic", VitResample::bicubic},
                                                       {"bicubic_hf", VitResample::bicubic_hf},
                                                       {"bicubic_dino", VitResample::bicubic_dino}};
    const std::map<std::string, VitPosLoad> loads{{"exact", VitPosLoad::exact}, {"resample", VitPosLoad::resample},
                                                  {"adopt", VitPosLoad::adopt}};
    o.pos_resample = resamples.at(c.value("pos_resample", "bicubic"));
    o.pos_load = loads.at(c.value("pos_load", "exact"));
    return o;
}

nlohmann::json case_named(const Peer& p, const std::string& name) {
    for (const auto& c : p.cases)
        if (c["name"] == name) return c;
    ADD_FAILURE() << "the peer has no case " << name;
    return {};
}

torch::Tensor tensor_named(const NamedTensors& sd, const std::string& key) {
    for (const auto& [k, t] : sd)
        if (k == key) return t;
    ADD_FAILURE() << "no " << key;
    return {};
}

}  // namespace

TEST(VitWeights, EveryPeerCaseGivesThePeersTokensAndOutput) {
    const Peer& p = peer();
    ASSERT_TRUE(p.error.empty()) << p.error;
    const auto input = tensor_named(torch_file_read((p.dir.path / "input.pt").string()), "x");
    torch::NoGradGuard no_grad;
    for (const auto& c : p.cases) {
        const std::string name = c["name"];
        SCOPED_TRACE(name);
        Vit vit(options_of(c));
        vit->eval();
        vit_load(vit, (p.dir.path / (name + ".pt")).string());
        const int64_t run = c["run"];
        const auto x = input.index({torch::indexing::Slice(), torch::indexing::Slice(), torch::indexing::Slice(0, run),
                                    torch::indexing::Slice(0, run)});
        const auto want = torch_file_read((p.dir.path / (name + "_out.pt")).string());
        const auto tokens = vit->tokens(x), pooled = vit->forward(x);
        const auto want_tokens = tensor_named(want, "tokens"), want_pooled = tensor_named(want, "pooled");
        ASSERT_EQ(tokens.sizes(), want_tokens.sizes());
        ASSERT_EQ(pooled.sizes(), want_pooled.sizes());
        ASSERT_EQ(pooled.size(1), vit_out_dim(vit->opt));
        // Tokens are LayerNorm outputs of order 1: 1e-5 is rounding, not a different function.
        const double dt = (tokens - want_tokens).abs().max().item<double>();
        const double dp = (pooled - want_pooled).abs().max().item<double>();
        std::printf("[vit] %-16s tokens %s max |diff| %.2e, pooled %.2e\n", name.c_str(), c10::str(tokens.sizes()).c_str(), dt, dp);
        EXPECT_LT(dt, 1e-5);
        EXPECT_LT(dp, 1e-5);
    }
}

// model.safetensors files (Kaiko, Phikon) load as their torch.save twins do: bfloat16 as stored.
TEST(VitWeights, ASafetensorsFileLoadsAsTheTorchSaveFile) {
    const Peer& p = peer();
    ASSERT_TRUE(p.error.empty()) << p.error;
    const nlohmann::json bf16 = case_named(p, "bf16");
    const std::string pt = (p.dir.path / "bf16.pt").string(), st = p.dir / "bf16.safetensors";
    const auto sd = torch_file_read(pt);
    ASSERT_EQ(sd.front().second.scalar_type(), torch::kBFloat16);
    safetensors_write(st, sd);
    Vit a(options_of(bf16)), b(options_of(bf16));
    a->eval(), b->eval();
    vit_load(a, pt);
    vit_load(b, st);
    torch::NoGradGuard no_grad;
    const auto x = torch::rand({1, 3, 32, 32});
    EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
}

TEST(VitWeights, AFileOfAnotherModelNamesItsKeysAndTheFile) {
    const Peer& p = peer();
    ASSERT_TRUE(p.error.empty()) << p.error;
    // The plain ViT's file into the DINOv2 trunk with registers and LayerScale.
    Vit vit(options_of(case_named(p, "dinov2_reg")));
    const std::string file = (p.dir.path / "plain.pt").string();
    const std::string msg = test::error_of([&] { vit_load(vit, file); });
    EXPECT_NE(msg.find(file), std::string::npos) << msg;
    EXPECT_NE(msg.find("reg_token"), std::string::npos) << msg;         // missing
    EXPECT_NE(msg.find("blocks.0.ls1.gamma"), std::string::npos) << msg;  // missing
    EXPECT_NE(msg.find("pos_embed"), std::string::npos) << msg;          // mis-shaped
    EXPECT_NE(msg.find("mlp.fc2.weight"), std::string::npos) << msg;     // mis-shaped (SwiGLU halves)
}

// Dinov2Model with registers: the class token's position embedding is folded into the token, so
// pos_embed holds the patches only (timm's no_embed_class); without registers it stays in pos_embed.
TEST(VitWeights, HuggingFaceDinov2KeysBecomeTimmKeys) {
    const Peer& p = peer();
    ASSERT_TRUE(p.error.empty()) << p.error;
    const auto hf = torch_file_read((p.dir.path / "hf_dinov2_reg.pt").string());
    const auto timm = vit_keys_timm(hf);
    std::map<std::string, torch::Tensor> by_name(timm.begin(), timm.end());
    EXPECT_EQ(by_name.count("embeddings.mask_token"), 0u);
    ASSERT_EQ(by_name.count("reg_token"), 1u);
    EXPECT_EQ(by_name["pos_embed"].sizes(), (std::vector<int64_t>{1, 36, 32}));  // 6 x 6, no class entry
    const auto file_pos = tensor_named(hf, "embeddings.position_embeddings");
    EXPECT_TRUE(torch::allclose(by_name["cls_token"], tensor_named(hf, "embeddings.cls_token") + file_pos.slice(1, 0, 1)));
    EXPECT_TRUE(torch::equal(by_name["blocks.1.ls2.gamma"], tensor_named(hf, "encoder.layer.1.layer_scale2.lambda1")));
    const auto swiglu = vit_keys_timm(torch_file_read((p.dir.path / "hf_dinov2_swiglu.pt").string()));
    std::map<std::string, torch::Tensor> packed(swiglu.begin(), swiglu.end());
    EXPECT_EQ(packed["pos_embed"].sizes(), (std::vector<int64_t>{1, 17, 32}));  // class entry + 4 x 4
    EXPECT_EQ(packed["blocks.0.mlp.fc1.weight"].sizes(), (std::vector<int64_t>{96, 32}));  // weights_in
    EXPECT_EQ(packed["blocks.0.mlp.fc2.weight"].sizes(), (std::vector<int64_t>{32, 48}));  // weights_out
}

// A trunk that adopted its file's grid is saved with it; a freshly built trunk takes the saved
// pos_embed the same way (as checkpoints of IPS models load), and computes the same.
TEST(VitWeights, AnAdoptedGridLoadsAgainIntoAFreshTrunk) {
    const Peer& p = peer();
    ASSERT_TRUE(p.error.empty()) << p.error;
    const VitOptions o = options_of(case_named(p, "hf_dinov2_reg"));
    Vit a(o);
    a->eval();
    vit_load(a, (p.dir.path / "hf_dinov2_reg.pt").string());
    EXPECT_EQ(a->pos_embed.size(1), 36);
    EXPECT_EQ(a->opt.img_size, 48);
    NamedTensors saved = state_dict_of(*a);
    Vit b(o);
    b->eval();
    for (auto& [k, t] : saved)
        if (k == "pos_embed") vit_pos_embed_take(b, t, "saved");
    state_dict_apply(*b, saved, "", true, "saved");
    torch::NoGradGuard no_grad;
    const auto x = torch::rand({1, 3, 40, 40});
    EXPECT_TRUE(torch::equal(a->forward(x), b->forward(x)));
    // Without adoption, the same file is refused by name.
    VitOptions exact = o;
    exact.pos_load = VitPosLoad::exact;
    Vit c(exact);
    const std::string msg = test::error_of([&] { vit_load(c, (p.dir.path / "hf_dinov2_reg.pt").string()); });
    EXPECT_NE(msg.find("pos_embed"), std::string::npos) << msg;
}

TEST(VitWeights, HuggingFaceKeysBecomeTimmKeys) {
    const Peer& p = peer();
    ASSERT_TRUE(p.error.empty()) << p.error;
    const auto hf = torch_file_read((p.dir.path / "hf_vit.pt").string());
    const auto timm = vit_keys_timm(hf);
    std::map<std::string, std::vector<int64_t>> shapes;
    for (const auto& [k, t] : timm) shapes[k] = t.sizes().vec();
    EXPECT_EQ(shapes.count("pooler.dense.weight"), 0u);
    EXPECT_EQ(shapes["blocks.1.attn.qkv.weight"], (std::vector<int64_t>{96, 32}));
    EXPECT_EQ(shapes["blocks.1.attn.qkv.bias"], (std::vector<int64_t>{96}));
    EXPECT_EQ(shapes["patch_embed.proj.weight"], (std::vector<int64_t>{32, 3, 8, 8}));
    // A ViTForImageClassification file wraps the same keys in "vit." and adds its classifier.
    NamedTensors wrapped;
    for (const auto& [k, t] : hf) wrapped.emplace_back("vit." + k, t);
    wrapped.emplace_back("classifier.weight", torch::zeros({2, 32}));
    const auto mapped = vit_keys_timm(wrapped);
    EXPECT_EQ(mapped.size(), timm.size() + 1);  // classifier.weight stays: loading names it as unexpected
}

// The shapes the published weight files hold (timm's names), from a 1-block build of each preset.
TEST(VitPresets, HoldThePublishedShapes) {
    struct Row {
        const char* name;
        std::vector<int64_t> pos_embed, fc1, fc2;
        int64_t out_dim;
    };
    const std::vector<Row> rows{
        {"uni", {1, 197, 1024}, {4096, 1024}, {1024, 4096}, 1024},
        {"uni2-h", {1, 256, 1536}, {8192, 1536}, {1536, 4096}, 1536},
        {"virchow", {1, 257, 1280}, {6832, 1280}, {1280, 3416}, 2560},
        {"virchow2", {1, 261, 1280}, {6832, 1280}, {1280, 3416}, 2560},
        {"h-optimus-0", {1, 256, 1536}, {8192, 1536}, {1536, 4096}, 1536},
        {"h-optimus-1", {1, 256, 1536}, {8192, 1536}, {1536, 4096}, 1536},
        {"gigapath", {1, 197, 1536}, {8192, 1536}, {1536, 4096}, 1536},
        {"phikon", {1, 197, 768}, {3072, 768}, {768, 3072}, 768},
        {"kaiko-vits16", {1, 197, 384}, {1536, 384}, {384, 1536}, 384},
        {"kaiko-vitb16", {1, 197, 768}, {3072, 768}, {768, 3072}, 768},
        {"kaiko-vitl14", {1, 1369, 1024}, {4096, 1024}, {1024, 4096}, 1024},
        {"conch-v1", {1, 785, 768}, {3072, 768}, {768, 3072}, 512},
        {"conch-v1.5", {1, 197, 1024}, {4096, 1024}, {1024, 4096}, 768},
        {"phikon-v2", {1, 197, 1024}, {4096, 1024}, {1024, 4096}, 1024},
        {"hibou-b", {1, 256, 768}, {3072, 768}, {768, 3072}, 768},
        {"hibou-l", {1, 256, 1024}, {4096, 1024}, {1024, 4096}, 1024},
    };
    ASSERT_EQ(rows.size(), vit_presets().size());
    for (const auto& r : rows) {
        SCOPED_TRACE(r.name);
        VitOptions o = vit_preset(r.name).vit;
        o.depth = 1;  // the full models hold 0.3-1.1 billion parameters
        Vit vit(o);
        std::map<std::string, std::vector<int64_t>> shapes;
        for (const auto& [k, t] : state_dict_of(*vit)) shapes[k] = t.sizes().vec();
        EXPECT_EQ(shapes["pos_embed"], r.pos_embed);
        EXPECT_EQ(shapes["blocks.0.mlp.fc1.weight"], r.fc1);
        EXPECT_EQ(shapes["blocks.0.mlp.fc2.weight"], r.fc2);
        EXPECT_EQ(vit_out_dim(o), r.out_dim);
        EXPECT_EQ(shapes.count("reg_token") ? shapes["reg_token"][1] : 0, o.reg_tokens);
        EXPECT_EQ(shapes.count("blocks.0.ls1.gamma"), o.layer_scale ? 1u : 0u);
    }
    const std::string msg = test::error_of([] { vit_preset("uni3"); });
    EXPECT_NE(msg.find("uni3"), std::string::npos) << msg;
    EXPECT_NE(msg.find("virchow2"), std::string::npos) << msg;
}
