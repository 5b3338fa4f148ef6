// `import ips`: the module's entry point and how C++ errors become Python exceptions.
#include <csignal>
#include <cstring>

#include "bind.h"
#include "ips/interrupt.h"
#include "ips/runtime.h"
#include "ips/select.h"

namespace ips::python {
namespace {

// Sets a Python exception of `type` with `what` decoded as file names are (surrogateescape): an
// error naming a file whose name is not UTF-8 still arrives, the name as os.fsdecode gives it.
void error_set(PyObject* type, const char* what) {
    PyObject* message = PyUnicode_DecodeUTF8(what, Py_ssize_t(std::strlen(what)), "surrogateescape");
    PyErr_SetObject(type, message);
    Py_XDECREF(message);
}

}  // namespace

std::string path_of(const py::handle& path) {
    return py::module_::import("os").attr("fsencode")(path).cast<std::string>();
}

py::str path_to_python(const std::string& path) {
    return py::module_::import("os").attr("fsdecode")(py::bytes(path));
}

torch::Device device_parse(const py::object& device) {
    const std::string name = py::str(device);
    if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    try {
        const torch::Device d(name);
        if (d.is_cuda() && !torch::cuda::is_available())
            throw std::invalid_argument("device " + name + ": no CUDA device is available to this libtorch build");
        return d;
    } catch (const c10::Error&) {
        throw std::invalid_argument("device must be auto, cpu, cuda or cuda:N, not '" + name + "'");
    }
}

void python_signals_check(const std::string& what) {
    py::gil_scoped_acquire held;
    if (PyErr_CheckSignals() == 0) return;
    PyErr_Clear();  // the KeyboardInterrupt Python's handler raised: ours replaces it, saying what is kept
    throw Interrupted(SIGINT, what);
}

}  // namespace ips::python

PYBIND11_MODULE(_ips, m) {
    namespace py = pybind11;
    using namespace ips::python;
    m.doc() = "ips: Iterative Patch Selection on images of any size, from the same C++ library as the ips CLI";
    m.attr("__version__") = IPS_PY_VERSION;

    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (CallbackFailed& e) {
            e.error.restore();
        } catch (const ips::FileNotFound& e) {
            error_set(PyExc_FileNotFoundError, e.what());
        } catch (const ips::ConfigError& e) {
            error_set(PyExc_ValueError, e.what());
        } catch (const std::invalid_argument& e) {
            error_set(PyExc_ValueError, e.what());
        } catch (const ips::Interrupted& e) {
            error_set(PyExc_KeyboardInterrupt, e.what());
        } catch (const c10::Error& e) {
            // libtorch's own checks: the message as the CLI prints it, without the C++ backtrace.
            error_set(PyExc_RuntimeError, e.what_without_backtrace());
        } catch (const py::builtin_exception&) {
            throw;  // pybind11's own (IndexError, StopIteration, ...): its translator knows them
        } catch (const py::error_already_set&) {
            throw;
        } catch (const std::exception& e) {
            error_set(PyExc_RuntimeError, e.what());
        }
    });

    m.def("versions", &ips::runtime_versions, "The ips version and the libtorch, CUDA and cuDNN it runs on.");
    m.def(
        "set_threads", [](int n) { ips::runtime_configure(n); }, py::arg("n") = 0,
        "CPU threads of torch and OpenBLAS (0: all cores), as the CLI's --threads.");
    config_bind(m);
    slides_bind(m);
    models_bind(m);
    jobs_bind(m);
}
