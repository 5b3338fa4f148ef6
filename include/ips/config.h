// Run configuration: the reference implementation's YAML keys plus ours.
// A reference config file loads unchanged; keys it has that mean nothing here are reported once.
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

enum class ActFn { softmax, sigmoid };
enum class Metric { accuracy, multilabel_accuracy, auc };
const char* metric_name(Metric m);  // as written in configs and metrics files

struct Task {
    int id = 0;            // which query token feeds this task's head
    std::string name;
    ActFn act_fn = ActFn::softmax;
    Metric metric = Metric::accuracy;
};

struct Config {
    // optimisation
    int n_epoch = 150;
    int B = 16;
    int B_seq = 16;          // images per selection call: B = eager, 1 = eager sequential
    int n_epoch_warmup = 10;
    double lr = 1e-3;
    double wd = 0.1;
    // data
    int n_class = 10;
    std::string data_dir;
    std::string train_fname;
    std::string test_fname;
    bool eager = true;       // false = lazy: patch sources stay in host memory / on disk
    std::string dataset = "synthetic";  // which loader reads data_dir (see dataset.h)
    std::string normalize = "none";     // none | imagenet
    int n_train = 64;        // size of generated data sets (synthetic)
    int n_test = 32;
    std::array<int64_t, 2> img_size{0, 0};  // H, W of image data; 0 = derive from N and the grid
    // slides and large images read region by region (csv data sets, ips tiles / features)
    int slide_level = 0;       // pyramid level the patches are cut from
    double slide_mpp = 0;      // or: the coarsest level no coarser than this (µm per pixel; 0 = use slide_level)
    bool tissue = false;       // keep only tiles with tissue (Otsu on a thumbnail)
    double tissue_min = 0.01;  // a tile is tissue when at least this fraction of it is
    // misc
    double eps = 1e-6;
    int64_t seed = 0;
    // encoder
    bool is_image = true;
    std::string enc_type = "resnet18";  // resnet18 | resnet50
    bool pretrained = false;
    std::string encoder_weights;        // torchvision state dict to initialise the trunk from
    int n_chan_in = 1;
    int n_res_blocks = 2;               // 2 or 4
    int encoder_width = 64;             // channels of the first ResNet stage (torchvision: 64)
    // speed (precision.h): "auto" is fast on CUDA (bf16 encoder, channels-last, TF32) and exact on CPU
    std::string precision = "auto";     // auto | fp32 | tf32 | bf16
    std::string channels_last = "auto"; // auto | true | false
    bool cudnn_benchmark = true;        // cuDNN autotuning: shapes repeat every batch
    // selection
    bool shuffle = true;
    std::string shuffle_style = "batch";  // batch | instance
    bool shuffle_eval = false;            // the reference also shuffles at evaluation; we don't by default
    int n_token = 1;
    int64_t N = 0;
    int64_t M = 100;
    int64_t I = 100;
    std::array<int64_t, 2> patch_size{50, 50};
    std::array<int64_t, 2> patch_stride{50, 50};
    // aggregator
    bool use_pos = false;
    int H = 8;
    int D = 128;
    int D_k = 16;
    int D_v = 16;
    int D_inner = 512;
    double attn_dropout = 0.1;
    double dropout = 0.1;
    std::vector<Task> tasks;
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
std::array<int64_t, 2> config_image_size(const Config& cfg);

}  // namespace ips
