#include <gtest/gtest.h>

#include "ips/config.h"
#include "test_support.h"

using namespace ips;

namespace {

const std::string kDir = IPS_SOURCE_DIR;

std::string expect_config_error(const std::string& yaml, const std::vector<std::string>& sets = {}) {
    try {
        config_parse(yaml, sets);
    } catch (const ConfigError& e) {
        return e.what();
    }
    ADD_FAILURE() << "no ConfigError for:\n" << yaml;
    return "";
}

std::string with_base(const std::string& extra) {
    return "tasks: {t: {id: 0, name: a, act_fn: softmax, metric: accuracy}}\nN: 900\n" + extra;
}

}  // namespace

TEST(Config, ReferenceFormatLoadsUnchangedAndReportsIgnoredKeys) {
    std::vector<std::string> ignored;
    Config c = config_load(kDir + "/tests/fixtures/reference_style_mnist.yml", {}, &ignored);
    EXPECT_EQ(c.data.N, 900);
    EXPECT_EQ(c.select.M, 100);
    EXPECT_TRUE(c.model.use_pos);
    EXPECT_TRUE(c.data.eager);
    EXPECT_EQ(c.data.patch_size[0], 50);
    ASSERT_EQ(c.model.tasks.size(), 4u);
    EXPECT_EQ(c.model.tasks[3].name, "multi");
    EXPECT_EQ(c.model.tasks[3].act_fn, ActFn::sigmoid);
    EXPECT_EQ(c.model.tasks[3].metric, Metric::multilabel_accuracy);
    std::sort(ignored.begin(), ignored.end());
    EXPECT_EQ(ignored, (std::vector<std::string>{"n_worker", "pin_memory", "track_efficiency", "track_epoch"}));
}

TEST(Config, ShippedConfigsLoad) {
    for (const char* name : {"megapixel_mnist", "traffic_signs", "camelyon16_features"}) {
        SCOPED_TRACE(name);
        EXPECT_NO_THROW(config_load(kDir + "/configs/" + name + ".yaml"));
    }
}

TEST(Config, OverridesApplyToAnyKeyIncludingNested) {
    Config c = config_load(kDir + "/configs/megapixel_mnist.yaml",
                           {"M=7", "patch_size=[25, 25]", "patch_stride=25", "img_size=[100, 100]", "N=16",
                            "tasks.task0.name=target", "lr=0.5"});
    EXPECT_EQ(c.select.M, 7);
    EXPECT_EQ(c.data.patch_size[1], 25);
    EXPECT_EQ(c.data.patch_stride[0], 25);
    EXPECT_EQ(c.model.tasks[0].name, "target");
    EXPECT_DOUBLE_EQ(c.train.lr, 0.5);
}

TEST(Config, ResolvedYamlRoundTrips) {
    Config c = config_load(kDir + "/configs/megapixel_mnist.yaml", {"M=33"});
    Config again = config_parse(config_to_yaml(c));
    EXPECT_EQ(config_to_yaml(again), config_to_yaml(c));
    EXPECT_EQ(again.select.M, 33);
    EXPECT_EQ(again.model.tasks.size(), 4u);
}

// Each key lands in its layer's struct, names with a fixed set of values as enums.
TEST(Config, KeysLandInTheirLayersTyped) {
    Config c = config_load(kDir + "/configs/traffic_signs.yaml",
                           {"precision=bf16", "channels_last=false", "shuffle_style=instance", "eager=false"});
    EXPECT_EQ(c.model.enc_type, EncoderType::resnet18);
    EXPECT_EQ(c.model.n_res_blocks, 4);
    EXPECT_EQ(c.compute.precision, PrecisionChoice::bf16);
    EXPECT_EQ(c.compute.channels_last, Toggle::off);
    EXPECT_EQ(c.select.shuffle_style, ShuffleStyle::instance);
    EXPECT_EQ(c.data.normalize, Normalize::imagenet);
    EXPECT_FALSE(c.data.eager);
    EXPECT_EQ(c.train.B, 16);
    // Written back under the reference's names and values.
    const std::string yaml = config_to_yaml(c);
    for (const char* line : {"precision: bf16", "channels_last: false", "shuffle_style: instance", "normalize: imagenet",
                             "enc_type: resnet18"})
        EXPECT_NE(yaml.find(line), std::string::npos) << line << "\n" << yaml;
}

TEST(Config, ErrorsNameTheKey) {
    EXPECT_NE(expect_config_error(with_base("bogus_key: 1")).find("'bogus_key'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("M: many")).find("'M'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("M: 0")).find("'M'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("I: -3")).find("'I'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("patch_size: [2000, 50]\nimg_size: [1500, 1500]")).find("'patch_size'"),
              std::string::npos);
    EXPECT_NE(expect_config_error(with_base("use_pos: true\nis_image: false\nD: 7\nn_chan_in: 4")).find("'D'"),
              std::string::npos);
    EXPECT_NE(expect_config_error(with_base("shuffle_style: sideways")).find("'shuffle_style'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("use_pos: maybe")).find("'use_pos'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("precision: fp16")).find("'precision'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("channels_last: sometimes")).find("'channels_last'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("cudnn_benchmark: 3")).find("'cudnn_benchmark'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base("img_size: [1500, 1500]\nN: 901")).find("'N'"), std::string::npos);
    EXPECT_NE(expect_config_error(with_base(""), {"nothing_here=1"}).find("'nothing_here'"), std::string::npos);
    EXPECT_NE(expect_config_error("tasks: {t: {id: 3, name: a, act_fn: softmax, metric: accuracy}}")
                  .find("'tasks.task0.id'"),
              std::string::npos);
    EXPECT_NE(expect_config_error("tasks: {t: {id: 0, name: a, act_fn: relu, metric: accuracy}}").find("act_fn"),
              std::string::npos);
}

TEST(Config, MissingFileIsNamed) {
    try {
        config_load("/nonexistent/cfg.yaml");
        FAIL();
    } catch (const FileNotFound& e) {  // a front end tells it from a bad config (Python: FileNotFoundError)
        EXPECT_NE(std::string(e.what()).find("/nonexistent/cfg.yaml"), std::string::npos);
    }
}

// Found by fuzz/config.cpp (fuzz/crashes/config/): sizes whose grid arithmetic would overflow
// int64 are refused by key.
TEST(Config, SizesBeyondTwoToThe31AreRefusedByKey) {
    const std::string tasks = "tasks: {t: {name: x}}\n";
    auto msg = ips::test::error_of([&] {
        config_parse("N: 1\nimg_size: [4611686018427387904, 4611686018427387904]\npatch_size: 1\npatch_stride: 1\n" + tasks);
    });
    EXPECT_NE(msg.find("'img_size'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("at most 2^31"), std::string::npos) << msg;
    msg = ips::test::error_of([&] { config_parse("N: 9223372036854775807\npatch_stride: 4611686018427387904\n" + tasks); });
    EXPECT_NE(msg.find("at most 2^31"), std::string::npos) << msg;
}
