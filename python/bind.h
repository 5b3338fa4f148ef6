// What the files of the Python module share: the GIL released around library calls, errors as
// the Python exceptions a user expects, devices from strings, and the Config wrapper.
#pragma once

#include <torch/extension.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ips/config.h"
#include "ips/evaluate.h"

namespace ips::python {

namespace py = pybind11;

// A Python callback raised inside a job over slides. Not a std::exception, so that the job's
// loop (which reports a failing slide and goes on) lets it through: it ends the job, and Python
// sees the callback's own exception.
struct CallbackFailed {
    py::error_already_set error;
};

// Runs `work` with the GIL released, so other Python threads run meanwhile. Its errors go on to
// the module's translator (module.cpp): ConfigError and std::invalid_argument become ValueError,
// FileNotFound FileNotFoundError, Interrupted KeyboardInterrupt, the rest RuntimeError.
template <typename F>
auto without_gil(F&& work) -> decltype(work()) {
    py::gil_scoped_release released;
    return work();
}

// A path from Python (str, bytes or os.PathLike) as the bytes the file system sees: os.fsencode,
// so names that are not UTF-8 (surrogate-escaped in a str) reach the library as they are.
std::string path_of(const py::handle& path);
// And back: os.fsdecode of the bytes.
py::str path_to_python(const std::string& path);

// "auto" (CUDA when available), "cpu", "cuda", "cuda:1", or a torch.device.
torch::Device device_parse(const py::object& device);

// Throws Interrupted (KeyboardInterrupt in Python) when Ctrl-C came while the GIL was released:
// the loops over slides ask between slides, as a run asks between steps. `what` says what is kept.
void python_signals_check(const std::string& what);

// A config with where it came from: jobs that add overrides of their own (features' encoder=) load
// it again with those first, as the CLI does with --encoder and --set.
struct PyConfig {
    Config cfg;
    std::string path;                    // the YAML file, or "" for text
    std::string text;                    // the YAML text when there is no file
    std::vector<std::string> overrides;  // KEY=VALUE, as --set takes them
};

// An evaluation as Python sees it: loss, n and per task {loss, <metric name>: value}.
py::dict eval_dict(const Config& cfg, const EvalResult& r);

// Loads again with `first` before the config's own overrides (which win over them).
Config config_reload(const PyConfig& c, const std::vector<std::string>& first);

void config_bind(py::module_& m);
void slides_bind(py::module_& m);
void models_bind(py::module_& m);
void jobs_bind(py::module_& m);

}  // namespace ips::python
