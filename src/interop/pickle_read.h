// The reading side of the pickle in a torch.save file: a small unpickler for what torch.save
// emits. Internal to torch_file.cpp (and pickle_write.cpp, for storage_class_name).
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
// Only the writer calls it, but it lives here, beside the one table of storage classes the
// reader accepts, so every name the writer emits is one the reader knows.
const char* storage_class_name(torch::ScalarType dtype);

}  // namespace ips::detail
