// The writing side of the pickle in a torch.save file: a pickler for dicts of tensors and plain
// values. Internal to torch_file.cpp.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace ips::detail {

// Pickle protocol 2 of `root`: tensors, ints, floats, bools, strings, None and dicts with string
// keys (a dict whose values are all tensors becomes an OrderedDict, as a state_dict is). Each
// tensor is appended to `storages` (contiguous, on the CPU) and refers to storage record
// "<its index>". Throws std::runtime_error for a value it cannot write, naming its key.
std::string pickle_value(const c10::IValue& root, std::vector<torch::Tensor>& storages);

}  // namespace ips::detail
