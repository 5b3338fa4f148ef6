// Data sets hand out examples: a patch source per image plus its targets. Loaders are found by the
// config's `dataset` key in a table (dataset.cpp), one entry per format.
#pragma once

#include <functional>

#include "ips/config.h"
#include "ips/patch_source.h"

namespace ips {

struct Example {
    PatchSourcePtr source;
    // One target per task, in config task order: softmax task -> int64 scalar (class index);
    // sigmoid task -> float [n_class] (multi-hot).
    std::vector<torch::Tensor> targets;
    std::string name;  // file name or "split/index", for messages and predictions
};

struct Dataset {
    virtual ~Dataset() = default;
    virtual int64_t size() const = 0;
    virtual Example get(int64_t i) = 0;
};
using DatasetPtr = std::shared_ptr<Dataset>;

// split: "train" | "test". Throws ConfigError naming the `dataset` key for an unknown loader.
DatasetPtr dataset_open(const Config& cfg, const std::string& split);

using DatasetOpener = std::function<DatasetPtr(const Config&, const std::string& split)>;
struct DatasetEntry {
    const char* name;
    const char* description;
    DatasetOpener open;
};
const std::vector<DatasetEntry>& dataset_table();

// Random inputs of the configured shapes and random targets, deterministic per (seed, split, index).
// Images: [n_chan_in, H, W] uint8 cut by the config's grid; features: [N, n_chan_in] float.
DatasetPtr synthetic_dataset_make(const Config& cfg, const std::string& split);

// `csv`: data_dir/train_fname (default train.csv) with rows `path,label[,label...]` (one label
// column per task; a header row starting with `path` is skipped). A path names an image or slide
// (patches read on demand; `tissue` keeps tissue tiles only) or a feature bag (.h5, per-slide
// layout, or FILE.h5#GROUP in the reference layout). Rows whose file cannot be opened are reported
// and left out. Relative paths are taken from the CSV's folder.
DatasetPtr csv_dataset_make(const Config& cfg, const std::string& split);
// `ips_h5`: the reference's single HDF5 file (data_dir/train_fname, default train.h5) with a group
// per slide holding `img` and attribute `label`.
DatasetPtr reference_bag_dataset_make(const Config& cfg, const std::string& split);

// Stack per-example targets into per-task batch tensors: softmax [B] int64, sigmoid [B, n_class].
std::vector<torch::Tensor> targets_stack(const std::vector<Example>& examples, size_t n_tasks);

}  // namespace ips
