// Data sets are found by the config's `dataset` key in a table (dataset.cpp), one entry per kind,
// each kind in a file of its own (src/data/). They hand out Examples (example.h).
#pragma once

#include <functional>

#include "ips/config.h"
#include "ips/example.h"

namespace ips {

// split: "train" | "test". Throws ConfigError naming the `dataset` key for an unknown kind.
DatasetPtr dataset_open(const Config& cfg, const std::string& split);

using DatasetOpener = std::function<DatasetPtr(const Config&, const std::string& split)>;
struct DatasetEntry {
    const char* name;
    const char* description;
    DatasetOpener open;
};
const std::vector<DatasetEntry>& dataset_table();

// Helpers the kinds share.
// The split file: data_dir/train_fname or test_fname, else data_dir/<split><fallback_ext>.
// Throws ConfigError naming the key when it does not exist.
std::string split_file(const DataOptions& data, const std::string& split, const char* fallback_ext);
// One label cell for a task: a class index (softmax), 0/1 (sigmoid, one class) or the present
// classes separated by ';' or spaces (sigmoid, several classes). Throws naming `where`.
torch::Tensor target_parse(const std::string& cell, const Task& task, int n_class, const std::string& where);

}  // namespace ips
