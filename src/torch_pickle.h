// The pickle side of torch.save files: a small unpickler for what torch.save emits
// (torch_pickle.cpp) and a pickler for dicts of tensors and plain values (torch_pickle_write.cpp).
// Internal to torch_file.cpp.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ips::detail {

enum class PyKind { none, boolean, integer, floating, str, bytes, tuple, list, dict, global, storage, tensor };

struct PyValue;
using PyRef = std::shared_ptr<PyValue>;

struct PyValue {
    PyKind kind = PyKind::none;
    bool b = false;
    int64_t i = 0;
    double f = 0;
    std::string s;                               // str / bytes / global "module.name"
    std::vector<PyRef> items;                    // tuple / list / set
    std::vector<std::pair<PyRef, PyRef>> dict;   // dict, in insertion order
    torch::Tensor tensor;                        // tensor; storage: 1-D over the whole storage
};

// Returns a storage ('storage', <dtype>Storage, key, location, numel) as a 1-D tensor.
using StorageLoader = std::function<torch::Tensor(const std::string& key, torch::ScalarType dtype,
                                                  int64_t numel)>;

// Runs the pickle program; throws std::runtime_error (without the file name, the caller adds it).
PyRef pickle_load(const std::string& data, const StorageLoader& load_storage);

// torch.save's class name for a storage of `dtype` ("FloatStorage"); throws for dtypes it lacks.
const char* storage_class_name(torch::ScalarType dtype);

// Pickle protocol 2 of `root`: tensors, ints, floats, bools, strings, None and dicts with string
// keys (a dict whose values are all tensors becomes an OrderedDict, as a state_dict is). Each
// tensor is appended to `storages` (contiguous, on the CPU) and refers to storage record
// "<its index>". Throws std::runtime_error for a value it cannot write, naming its key.
std::string pickle_value(const c10::IValue& root, std::vector<torch::Tensor>& storages);

}  // namespace ips::detail
