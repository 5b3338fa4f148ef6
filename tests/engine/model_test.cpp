#include <gtest/gtest.h>

#include <set>

#include "ips/model.h"
#include "test_support.h"
#include "test_util.h"

using namespace ips;

namespace {
const std::string kDir = IPS_SOURCE_DIR;
}

TEST(Model, ReferenceParameterCountsAreExact) {
    struct Case {
        const char* config;
        int64_t params;
    };
    for (const Case& c : {Case{"megapixel_mnist", 880232}, Case{"traffic_signs", 14329412},
                          Case{"camelyon16_features", 4201473}}) {
        SCOPED_TRACE(c.config);
        IPSNet net = test::net_of(config_load(kDir + "/configs/" + c.config + ".yaml"));
        EXPECT_EQ(parameter_count(*net), c.params);
    }
}

TEST(Model, ParameterNamesFollowTheReferenceLayout) {
    IPSNet net = test::net_of(config_load(kDir + "/configs/megapixel_mnist.yaml"));
    auto params = net->named_parameters();
    for (const char* key : {"encoder.0.weight", "encoder.1.weight", "encoder.4.0.conv1.weight",
                            "encoder.5.0.downsample.0.weight", "encoder.5.1.bn2.bias", "transf.crs_attn.q",
                            "transf.crs_attn.q_w.weight", "transf.crs_attn.k_w.weight", "transf.crs_attn.v_w.weight",
                            "transf.crs_attn.fc.weight", "transf.crs_attn.layer_norm.weight", "transf.mlp.w_1.weight",
                            "transf.mlp.w_2.bias", "transf.mlp.layer_norm.bias", "output_layers.majority.0.weight",
                            "output_layers.multi.0.bias"})
        EXPECT_TRUE(params.contains(key)) << key;
    EXPECT_TRUE(net->named_buffers().contains("encoder.4.1.bn1.running_mean"));
    EXPECT_EQ(params["transf.crs_attn.q"].sizes(), (std::vector<int64_t>{1, 4, 128}));

    IPSNet bags = test::net_of(config_load(kDir + "/configs/camelyon16_features.yaml"));
    auto bp = bags->named_parameters();
    EXPECT_TRUE(bp.contains("encoder.1.weight"));  // Linear after the affine-free LayerNorm
    EXPECT_TRUE(bp.contains("encoder.2.weight"));  // BatchNorm1d
    EXPECT_FALSE(bp.contains("encoder.0.weight"));
}

TEST(Model, TrunkEmbeddingSizes) {
    struct Case {
        EncoderType type;
        int64_t chans;
        int blocks;
        int64_t dim;
    };
    for (const Case& c : {Case{EncoderType::resnet18, 1, 2, 128}, Case{EncoderType::resnet18, 3, 4, 512},
                          Case{EncoderType::resnet50, 3, 4, 2048}, Case{EncoderType::resnet50, 1, 2, 512}}) {
        int64_t dim = 0;
        auto trunk = resnet_trunk_make(c.type, c.chans, c.blocks, &dim);
        EXPECT_EQ(dim, c.dim);
        trunk->eval();
        auto out = trunk->forward(torch::rand({2, c.chans, 64, 64}));
        EXPECT_EQ(out.sizes(), (std::vector<int64_t>{2, c.dim}));
    }
}

TEST(Model, PositionalEncodingMatchesTheFormula) {
    const int64_t D = 16;
    auto idx = torch::tensor({0, 1, 7, 899}, torch::kLong);
    auto pe = pos_enc_1d(idx, D);
    ASSERT_EQ(pe.sizes(), (std::vector<int64_t>{4, D}));
    for (int64_t r = 0; r < 4; ++r) {
        double n = static_cast<double>(idx[r].item<int64_t>());
        for (int64_t k = 0; k < D / 2; ++k) {
            double angle = n / std::pow(10000.0, 2.0 * k / D);
            EXPECT_NEAR(pe[r][2 * k].item<float>(), std::sin(angle), 1e-4);
            EXPECT_NEAR(pe[r][2 * k + 1].item<float>(), std::cos(angle), 1e-4);
        }
    }
}

TEST(Model, PaddingRowsAreMaskedOutOfAttention) {
    Config cfg = test::tiny_bag_config(6, 8, 4, 2, 2);
    cfg.model.tasks.push_back(Task{1, "second", ActFn::sigmoid, Metric::multilabel_accuracy});
    IPSNet net = test::net_of(cfg);
    net->eval();
    torch::NoGradGuard no_grad;
    auto real = torch::randn({1, 6, 8});
    auto idx_real = torch::arange(6).unsqueeze(0);
    torch::Tensor attn_real, attn_pad;
    auto out_real = net->forward(real, idx_real, torch::Tensor(), &attn_real);
    // Same 6 patches plus 2 padding rows holding garbage: outputs must not change.
    auto padded = torch::cat({real, torch::full({1, 2, 8}, 1e3)}, 1);
    auto idx_pad = torch::cat({idx_real, torch::full({1, 2}, -1, torch::kLong)}, 1);
    auto valid = idx_pad.ge(0);
    auto out_pad = net->forward(padded, idx_pad, valid, &attn_pad);
    for (size_t t = 0; t < out_real.size(); ++t) EXPECT_TRUE(torch::allclose(out_real[t], out_pad[t], 1e-5, 1e-6));
    EXPECT_EQ(attn_pad.sizes(), (std::vector<int64_t>{1, 2, 2, 8}));
    EXPECT_EQ(attn_pad.index({torch::indexing::Ellipsis, torch::indexing::Slice(6, 8)}).abs().sum().item<float>(), 0.f);
}

// Selection and inference run the trunk with BatchNorm folded into the convolutions: the same
// function as the module's eval-mode forward, for BasicBlock and Bottleneck trunks alike.
TEST(Model, FoldedTrunkEqualsEvalForward) {
    for (auto [type, blocks, chan] : {std::tuple<EncoderType, int, int64_t>{EncoderType::resnet18, 2, 1},
                                      {EncoderType::resnet18, 4, 3}, {EncoderType::resnet50, 4, 3}}) {
        torch::manual_seed(7);
        int64_t dim = 0;
        auto trunk = resnet_trunk_make(type, chan, blocks, &dim, 16);
        torch::NoGradGuard no_grad;
        for (auto& b : trunk->named_buffers()) {  // statistics that matter, as after training
            if (b.key().find("running_mean") != std::string::npos) b.value().uniform_(-0.5, 0.5);
            if (b.key().find("running_var") != std::string::npos) b.value().uniform_(0.5, 2.0);
        }
        for (auto& p : trunk->named_parameters())
            if (p.key().find("bn") != std::string::npos || p.key().find("downsample.1") != std::string::npos)
                p.value().uniform_(0.5, 1.5);
        trunk->eval();
        auto x = torch::rand({4, chan, 40, 40});
        auto want = trunk->forward(x);
        auto got = resnet_trunk_forward_folded(trunk, x);
        ASSERT_EQ(got.sizes(), want.sizes()) << encoder_type_name(type);
        // Relative to the output's scale: 16 blocks of random statistics grow activations to ~1e2.
        const double rel = (got - want).abs().max().item<double>() / want.abs().max().item<double>();
        EXPECT_LT(rel, 1e-5) << encoder_type_name(type) << " " << blocks << " blocks";
    }
}

TEST(Model, ZeroKeysGiveUniformAttentionAndStillLearn) {
    Config cfg = test::tiny_bag_config(/*N=*/12, /*M=*/4, /*I=*/4);
    IPSNet net = net_make(cfg.model, cfg.compute, 3);
    attention_keys_zero(net);
    net->eval();
    torch::NoGradGuard no_grad;
    const auto scores = net->transf->crs_attn->scores(net->embed(torch::randn({12, cfg.model.n_chan_in})).unsqueeze(0), {});
    EXPECT_TRUE(torch::allclose(scores, torch::full({1, 12}, 1.0 / 12))) << scores;
    // The keys' gradient is not zero: the random query projection carries it.
    torch::GradMode::set_enabled(true);
    net->train();
    auto x = torch::randn({2, 4, cfg.model.n_chan_in});
    auto logits = net->forward(x, torch::zeros({2, 4}, torch::kLong), {});
    logits[0].logsumexp(-1).sum().backward();
    EXPECT_GT(net->transf->crs_attn->k_w->weight.grad().abs().max().item<double>(), 0);
}

namespace {

// A Kaiko ViT-S/16 cut to `depth` blocks as the IPS encoder: the preset's architecture, cheap.
Config vit_config(int depth, const std::string& extra = "") {
    return config_parse("is_image: true\nenc_type: vit\nvit: kaiko-vits16\nvit_depth: " + std::to_string(depth) +
                        "\nn_chan_in: 3\nD: 384\nH: 2\nD_k: 8\nD_v: 8\nD_inner: 32\nM: 2\nI: 4\n" + extra +
                        "tasks:\n  t: {id: 0, name: t}\n");
}

std::set<std::string> trainable_encoder_keys(IPSNet& net) {
    std::set<std::string> keys;
    for (const auto& p : net->named_parameters())
        if (p.key().rfind("encoder.", 0) == 0 && p.value().requires_grad()) keys.insert(p.key());
    return keys;
}

}  // namespace

TEST(Model, AViTEncoderSeesPatchesThroughItsPresetsTransform) {
    IPSNet net = test::net_of(vit_config(2));
    net->eval();
    Vit vit = net->vit();
    ASSERT_TRUE(vit);
    EXPECT_EQ(vit->blocks->size(), 2u);
    EXPECT_TRUE(net->named_parameters().contains("encoder.1.blocks.1.mlp.fc2.weight"));
    torch::NoGradGuard no_grad;
    const auto pixels = torch::rand({3, 3, 224, 224});  // [0, 1], as the patch sources give them
    const auto emb = net->embed(pixels);
    EXPECT_EQ(emb.sizes(), (std::vector<int64_t>{3, 384}));
    // Kaiko normalises with mean = std = 0.5: the trunk itself sees 2x - 1.
    EXPECT_TRUE(torch::allclose(emb, vit->forward(pixels * 2 - 1), 1e-5, 1e-5));
    // A 256 side is resized to 224 first (antialiased bilinear), as torchvision's Resize(224) does.
    const auto big = torch::rand({1, 3, 256, 256});
    namespace F = torch::nn::functional;
    const auto resized = F::interpolate(big, F::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{224, 224})
                                                 .mode(torch::kBilinear)
                                                 .align_corners(false)
                                                 .antialias(true));
    EXPECT_TRUE(torch::allclose(net->embed(big), vit->forward(resized * 2 - 1), 1e-5, 1e-5));
}

TEST(Model, TheViTConfigChecksNameTheKey) {
    const std::string e1 = test::error_of([] { vit_config(2, "normalize: imagenet\n"); });
    EXPECT_NE(e1.find("config key 'normalize'"), std::string::npos) << e1;
    const std::string e2 = test::error_of([] {
        config_parse("enc_type: vit\nvit: nope\nn_chan_in: 3\nD: 384\ntasks:\n  t: {id: 0, name: t}\n");
    });
    EXPECT_NE(e2.find("config key 'vit': unknown ViT encoder 'nope' (known: uni, uni2-h"), std::string::npos) << e2;
    const std::string e3 = test::error_of([] {
        config_parse("enc_type: vit\nvit: kaiko-vitb16\nn_chan_in: 3\nD: 384\ntasks:\n  t: {id: 0, name: t}\n");
    });
    EXPECT_NE(e3.find("config key 'D': the ViT 'kaiko-vitb16' yields 768-d embeddings, not 384"), std::string::npos) << e3;
    EXPECT_NE(test::error_of([] { vit_config(13); }).find("config key 'vit_depth'"), std::string::npos);
    EXPECT_NE(test::error_of([] { vit_config(2, "freeze_encoder: some\n"); }).find("config key 'freeze_encoder'"),
              std::string::npos);
    // The value round-trips through the saved config.
    for (const char* v : {"none", "all", "1"}) {
        const Config c = vit_config(2, std::string("freeze_encoder: ") + v + "\n");
        EXPECT_NE(config_to_yaml(c).find(std::string("freeze_encoder: ") + v), std::string::npos) << v;
        EXPECT_EQ(config_parse(config_to_yaml(c)).model.freeze_encoder, c.model.freeze_encoder) << v;
    }
}

TEST(Model, FreezeEncoderTrainsOnlyTheLastBlocks) {
    IPSNet none = test::net_of(vit_config(3));
    const size_t all = trainable_encoder_keys(none).size();
    EXPECT_GT(all, 0u);
    IPSNet frozen = test::net_of(vit_config(3, "freeze_encoder: all\n"));
    EXPECT_TRUE(trainable_encoder_keys(frozen).empty());
    IPSNet last = test::net_of(vit_config(3, "freeze_encoder: 1\n"));
    for (const auto& k : trainable_encoder_keys(last))
        EXPECT_TRUE(k.rfind("encoder.1.blocks.2.", 0) == 0 || k.rfind("encoder.1.norm.", 0) == 0) << k;
    EXPECT_TRUE(trainable_encoder_keys(last).count("encoder.1.norm.weight"));
    EXPECT_FALSE(last->named_parameters()["encoder.1.pos_embed"].requires_grad());
    // The aggregator and heads always train.
    EXPECT_TRUE(last->named_parameters()["transf.crs_attn.q"].requires_grad());

    // A ResNet: the stem and all but the last residual block frozen, and their BatchNorm stays in
    // eval mode through train(), so its statistics do not move.
    Config rc = config_parse("is_image: true\nenc_type: resnet18\nn_res_blocks: 2\nencoder_width: 8\nn_chan_in: 3\nD: 16\n"
                             "H: 2\nD_k: 8\nD_v: 8\nD_inner: 16\nfreeze_encoder: 1\ntasks:\n  t: {id: 0, name: t}\n");
    IPSNet res = test::net_of(rc);
    for (const auto& k : trainable_encoder_keys(res)) EXPECT_EQ(k.rfind("encoder.5.1.", 0), 0u) << k;
    EXPECT_FALSE(trainable_encoder_keys(res).empty());
    res->train();
    EXPECT_FALSE(res->encoder->ptr(1)->is_training());             // bn1 of the stem
    EXPECT_FALSE(res->encoder->ptr(5)->children()[0]->is_training());  // the first block of stage 2
    EXPECT_TRUE(res->encoder->ptr(5)->children()[1]->is_training());
    const auto before = res->named_buffers()["encoder.1.running_mean"].clone();
    res->embed(torch::rand({4, 3, 32, 32}));
    EXPECT_TRUE(torch::equal(before, res->named_buffers()["encoder.1.running_mean"]));
}
