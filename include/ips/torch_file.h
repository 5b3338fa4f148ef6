// PyTorch checkpoint files (torch.save of a state_dict) read and written without Python.
// libtorch's own torch::pickle_load rejects the OrderedDict that torch.save writes for a
// state_dict (SPEC §1.6), so the pickle inside the zip archive is interpreted here.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace ips {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Reads a file written by torch.save (PyTorch >= 1.6 zip format) and returns its tensors in
// file order, on the CPU, with their saved dtype, sizes and strides (views that shared a storage
// in Python share one here too). Nested containers are flattened with dotted keys:
// {'model': {'fc.weight': t}, 'epoch': 3} gives "model.fc.weight"; list and tuple items are
// numbered; values that are not tensors are skipped. A non-empty `root` keeps only the entries
// under that dotted prefix, with the prefix removed (root "model" gives "fc.weight").
// Throws std::runtime_error naming the file and the problem (missing, not a zip archive,
// legacy format, truncated, corrupt pickle, unsupported object).
NamedTensors torch_file_read(const std::string& path, const std::string& root = "");

// The whole object of a torch.save file: dicts (keys as text) become GenericDict, lists and tuples
// GenericList, Python int / float / bool / str the matching IValue, tensors as torch_file_read
// gives them; anything else (None, classes) becomes None. Errors as torch_file_read.
c10::IValue torch_file_load(const std::string& path);

// Writes the tensors as torch.save(OrderedDict) does, so Python's torch.load returns an
// OrderedDict that model.load_state_dict accepts. Tensors are written contiguous from the CPU.
// The file is written to a temporary name and renamed, so a crash never leaves a partial file.
void torch_file_write(const std::string& path, const NamedTensors& tensors);

// Writes any tree of string-keyed GenericDicts over tensors, ints, floats, bools, strings and
// None as torch.save would write the Python equivalent; a dict holding only tensors becomes an
// OrderedDict, so a nested state dict loads with load_state_dict. Atomic, as torch_file_write.
void torch_file_write_value(const std::string& path, const c10::IValue& root);

struct StateDictReport {
    std::vector<std::string> missing;         // in the module, not in the state dict
    std::vector<std::string> unexpected;      // in the state dict, not in the module
    std::vector<std::string> shape_mismatch;  // in both, with different sizes
};

// Copies a state dict into the module's parameters and buffers (converting dtype and device).
// Keys of `sd` name entries of the module below `prefix_in_module` ("encoder." puts "4.0.conv1.weight"
// into "encoder.4.0.conv1.weight"); only module entries under that prefix count as missing.
// A missing BatchNorm "num_batches_tracked" is not an error: old torchvision files lack it.
// With `strict`, any missing / unexpected / mismatched key throws std::runtime_error listing them
// (and `source`, usually the file name), and nothing is copied; without it, what fits is copied.
// `key_shown`, when given, is how the error message names a key (trunk_load_torchvision shows the
// torchvision key the user knows); by default keys appear as they are.
using KeyShown = std::function<std::string(const std::string& key)>;
StateDictReport state_dict_apply(torch::nn::Module& module, const NamedTensors& sd,
                                 const std::string& prefix_in_module = "", bool strict = true,
                                 const std::string& source = "", const KeyShown& key_shown = {});

// Parameters and buffers in PyTorch's state_dict order: each module's own parameters, then its
// own buffers, then its children in registration order.
NamedTensors state_dict_of(torch::nn::Module& module);

}  // namespace ips
