// Run configuration: the reference implementation's YAML keys plus ours, parsed once into one
// typed options struct per layer (libtorch's XxxOptions style). A reference config file loads
// unchanged; keys it has that mean nothing here are reported once. Each layer takes only its own
// struct: the model ModelOptions, selection SelectOptions, the backend switches ComputeOptions, the
// optimiser TrainOptions; data sets and the step, which join the layers, take the whole Config.
#pragma once

#include <array>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ips {

// Every configuration problem names the offending key (or file) in what().
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};
// A file the user named (directly, or through a config key or a CSV row) is not there. what()
// names it. Front ends tell it from the rest: the Python module raises FileNotFoundError.
struct FileNotFound : std::runtime_error {
    using std::runtime_error::runtime_error;
};

enum class ActFn { softmax, sigmoid };
enum class Metric { accuracy, multilabel_accuracy, auc };
const char* metric_name(Metric m);  // as written in configs and metrics files

// `vit`: a ViT trunk of the preset named by the `vit` key (vit.h: uni, virchow2, kaiko-vitb16, ...).
enum class EncoderType { resnet18, resnet34, resnet50, vit };
const char* encoder_type_name(EncoderType e);

// `precision` key: what the encoder computes in (precision.h resolves `automatic` per device).
enum class PrecisionChoice { automatic, fp32, tf32, bf16 };
// `channels_last` key: auto | true | false.
enum class Toggle { automatic, on, off };
// `normalize` key: per-channel normalisation after scaling 8-bit pixels to [0, 1].
enum class Normalize { none, imagenet };
// `shuffle_style` key: one patch permutation shared by the images of a selection call, or one each.
enum class ShuffleStyle { batch, instance };
// `nonfinite_loss` key: what a NaN or infinite training loss does (TrainOptions).
enum class NonFinite { stop, skip };

struct Task {
    int id = 0;            // which query token feeds this task's head
    std::string name;
    ActFn act_fn = ActFn::softmax;
    Metric metric = Metric::accuracy;
};

// The network: patch encoder, cross-attention aggregator, one head per task (SPEC §1.2, §1.3).
struct ModelOptions {
    bool is_image = true;               // false: pre-extracted features through the projector
    EncoderType enc_type = EncoderType::resnet18;
    bool pretrained = false;
    std::string encoder_weights;        // weights to initialise the trunk from: a torchvision state dict
                                        // (ResNets) or the model's own file (ViTs: vit_weights.h)
    std::string vit;                    // enc_type vit: the preset (vit_presets(), vit.h)
    int vit_depth = 0;                  // fewer blocks than the preset's (0: the preset's): the same
                                        // architecture, cheaper, for tests and quick experiments
    // Which encoder parameters train: -1 all (nothing frozen); K >= 0 only the last K blocks (ViT
    // blocks, or ResNet residual blocks) and what follows them; 0 freezes the whole encoder. Frozen
    // parts keep their weights and, in ResNets, their BatchNorm statistics (they run in eval mode).
    int freeze_encoder = -1;
    int n_chan_in = 1;                  // image channels, or the feature size F of bags
    int n_res_blocks = 2;               // 2 or 4
    int encoder_width = 64;             // channels of the first ResNet stage (torchvision: 64)
    int n_token = 1;
    bool use_pos = false;
    int H = 8;
    int D = 128;
    int D_k = 16;
    int D_v = 16;
    int D_inner = 512;
    double attn_dropout = 0.1;
    double dropout = 0.1;
    // A training run from scratch starts with the aggregator's keys at zero (attention_keys_zero,
    // model.h): its first selections are the shuffle's unbiased draw instead of a random ranking.
    // Off by default, as the reference initialises them at random; the demo turns it on.
    bool zero_keys = false;
    int n_class = 10;
    std::vector<Task> tasks;
};

// Backend switches of the encoder (precision.h): "automatic" is fast on CUDA and exact on CPU.
struct ComputeOptions {
    PrecisionChoice precision = PrecisionChoice::automatic;
    Toggle channels_last = Toggle::automatic;
    bool cudnn_benchmark = true;  // cuDNN autotuning: shapes repeat every batch
};

// Iterative patch selection (SPEC §1.1).
struct SelectOptions {
    int64_t M = 100;
    int64_t I = 100;
    bool shuffle = true;
    ShuffleStyle shuffle_style = ShuffleStyle::batch;
    bool shuffle_eval = false;  // the reference also shuffles at evaluation; we don't by default
};

// Where examples come from and how an image becomes a grid of patches.
struct DataOptions {
    std::string dataset = "synthetic";  // a name in dataset_table() (dataset.h)
    std::string data_dir;
    std::string train_fname;
    std::string test_fname;
    bool eager = true;       // false = lazy: patch sources stay in host memory / on disk
    Normalize normalize = Normalize::none;
    int n_train = 64;        // size of generated data sets (synthetic)
    int n_test = 32;
    int64_t N = 0;
    std::array<int64_t, 2> patch_size{50, 50};
    std::array<int64_t, 2> patch_stride{50, 50};
    std::array<int64_t, 2> img_size{0, 0};  // H, W of image data; 0 = derive from N and the grid
    int slide_level = 0;       // pyramid level the patches are cut from
    double slide_mpp = 0;      // or: the coarsest level no coarser than this (µm per pixel; 0 = use slide_level)
    int64_t bag_patch_size = 0;  // level-0 tile side of feature bags that record none and whose
                                 // coords are too sparse to tell it (CLAM's features files); 0: unset
    bool tissue = false;       // keep only tiles with tissue (Otsu on a thumbnail)
    double tissue_min = 0.01;  // a tile is tissue when at least this fraction of it is
};

// The optimiser and its schedule (SPEC §1.4).
struct TrainOptions {
    int n_epoch = 150;
    int B = 16;
    int B_seq = 16;          // images per selection call: B = eager, 1 = eager sequential
    int n_epoch_warmup = 10;
    double lr = 1e-3;
    double wd = 0.1;
    double eps = 1e-6;       // log(p + eps) in the softmax tasks' loss
    // Data-parallel runs: BatchNorm statistics over the patches of every rank (all-reduced in the
    // forward and backward passes) instead of each rank's own (docs/DISTRIBUTED.md).
    bool sync_bn = false;
    // A NaN or infinite training loss: "stop" ends the run naming the step, the batch's images and
    // the last good checkpoint; "skip" drops that batch (no update, BatchNorm statistics restored),
    // counts it in metrics.jsonl and goes on.
    NonFinite nonfinite_loss = NonFinite::stop;
};

struct Config {
    ModelOptions model;
    ComputeOptions compute;
    SelectOptions select;
    DataOptions data;
    TrainOptions train;
    int64_t seed = 0;
};

// Loads a YAML file; `overrides` are "key=value" strings (value in YAML syntax) applied on top.
// Throws ConfigError naming the file or key. Keys of the reference that we ignore are returned in
// `ignored` so the caller can report them once.
Config config_load(const std::string& path, const std::vector<std::string>& overrides = {},
                   std::vector<std::string>* ignored = nullptr);
// Same, from YAML text (used by tests and by checkpoints that embed their config).
Config config_parse(const std::string& yaml_text, const std::vector<std::string>& overrides = {},
                    std::vector<std::string>* ignored = nullptr, const std::string& origin = "<string>");
// Checks values that each key alone cannot: throws ConfigError naming the key.
void config_validate(const Config& cfg);
// The resolved config as YAML (every key, including defaults): saved with each run.
std::string config_to_yaml(const Config& cfg);

// Image height/width implied by the grid when img_size is unset: a square grid of N patches.
std::array<int64_t, 2> config_image_size(const DataOptions& data);

// Output size of the configured encoder: the trunk's embedding size, or D for the projector.
int64_t encoder_dim(const ModelOptions& model);

// Name of the configured encoder as bags record it: the ViT preset, the ResNet type, "projector".
std::string encoder_name(const ModelOptions& model);

}  // namespace ips
