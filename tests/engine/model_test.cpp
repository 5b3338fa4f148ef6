#include <gtest/gtest.h>

#include "ips/model.h"
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
