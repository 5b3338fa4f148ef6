// ips.Config: a YAML config with overrides as keyword arguments, the same keys, values and errors
// as the CLI's --set (they become KEY=VALUE strings in YAML syntax).
#include <yaml-cpp/yaml.h>

#include "bind.h"

namespace ips::python {
namespace {

// A Python value as YAML flow text: what the user would write after --set KEY=.
std::string yaml_of(const py::handle& v) {
    if (v.is_none()) return "null";
    if (py::isinstance<py::bool_>(v)) return v.cast<bool>() ? "true" : "false";
    if (py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v)) return py::repr(v);
    if (py::isinstance<py::str>(v)) return v.cast<std::string>();
    if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
        std::string s = "[";
        for (const auto& x : v) s += (s.size() > 1 ? ", " : "") + yaml_of(x);
        return s + "]";
    }
    if (py::isinstance<py::dict>(v)) {
        std::string s = "{";
        for (const auto& kv : v.cast<py::dict>())
            s += (s.size() > 1 ? ", " : "") + kv.first.cast<std::string>() + ": " + yaml_of(kv.second);
        return s + "}";
    }
    throw std::invalid_argument("a config value must be None, bool, int, float, str, list or dict, not " +
                                std::string(py::str(v.get_type())));
}

std::vector<std::string> overrides_of(const py::kwargs& kw) {
    std::vector<std::string> sets;
    for (const auto& kv : kw) sets.push_back(kv.first.cast<std::string>() + "=" + yaml_of(kv.second));
    return sets;
}

// A YAML node as Python values: numbers and booleans as such, the rest as text.
py::object python_of(const YAML::Node& n) {
    if (n.IsSequence()) {
        py::list l;
        for (const auto& x : n) l.append(python_of(x));
        return py::object(std::move(l));
    }
    if (n.IsMap()) {
        py::dict d;
        for (const auto& kv : n) d[py::str(kv.first.as<std::string>())] = python_of(kv.second);
        return py::object(std::move(d));
    }
    if (!n.IsScalar()) return py::none();
    const std::string s = n.as<std::string>();
    if (s == "true" || s == "false") return py::bool_(s == "true");
    try {
        size_t used = 0;
        const long long i = std::stoll(s, &used);
        if (used == s.size()) return py::int_(i);
        const double d = std::stod(s, &used);
        if (used == s.size()) return py::float_(d);
    } catch (const std::exception&) {
    }
    return py::str(s);
}

void ignored_warn(const std::string& origin, const std::vector<std::string>& ignored) {
    if (ignored.empty()) return;
    std::string list;
    for (const auto& k : ignored) list += (list.empty() ? "" : ", ") + k;
    const std::string msg = origin + ": keys of the reference implementation ignored here: " + list;
    if (PyErr_WarnEx(PyExc_UserWarning, msg.c_str(), 2) != 0) throw py::error_already_set();
}

PyConfig config_from(const std::string& path, const std::string& text, const py::kwargs& kw) {
    PyConfig c;
    c.path = path, c.text = text, c.overrides = overrides_of(kw);
    std::vector<std::string> ignored;
    c.cfg = without_gil([&] {
        return path.empty() ? config_parse(text, c.overrides, &ignored) : config_load(path, c.overrides, &ignored);
    });
    ignored_warn(path.empty() ? "<text>" : path, ignored);
    return c;
}

}  // namespace

Config config_reload(const PyConfig& c, const std::vector<std::string>& first) {
    std::vector<std::string> sets = first;
    sets.insert(sets.end(), c.overrides.begin(), c.overrides.end());
    return c.path.empty() ? config_parse(c.text, sets) : config_load(c.path, sets);
}

void config_bind(py::module_& m) {
    py::class_<PyConfig>(m, "Config", R"(A YAML config as ips train / predict / features read it.

Config(path, **overrides): keyword arguments override keys as --set KEY=VALUE does (the same keys,
the same checks): Config("mnist.yaml", M=8, patch_size=[50, 50]). A bad key or value raises
ValueError naming it; a missing file FileNotFoundError.)")
        .def(py::init([](const py::object& path, const py::kwargs& kw) { return config_from(path_of(path), "", kw); }),
             py::arg("path"))
        .def_static(
            "from_yaml", [](const std::string& text, const py::kwargs& kw) { return config_from("", text, kw); },
            py::arg("text"), "A config from YAML text instead of a file.")
        .def(
            "replace",
            [](const PyConfig& c, const py::kwargs& kw) {
                PyConfig out = c;
                for (auto& s : overrides_of(kw)) out.overrides.push_back(s);
                out.cfg = without_gil([&] { return config_reload(out, {}); });
                return out;
            },
            "A copy with more overrides (later ones win).")
        .def_property_readonly("yaml", [](const PyConfig& c) { return config_to_yaml(c.cfg); },
                               "The resolved config, every key: what a run saves as config.yaml.")
        .def_property_readonly("path", [](const PyConfig& c) { return path_to_python(c.path); })
        .def_property_readonly("overrides", [](const PyConfig& c) { return c.overrides; },
                               "The overrides as KEY=VALUE strings, as --set takes them.")
        .def_property_readonly(
            "tasks",
            [](const PyConfig& c) {
                std::vector<std::string> names;
                for (const auto& t : c.cfg.model.tasks) names.push_back(t.name);
                return names;
            },
            "Task names, in the config's order (the keys of a prediction's probabilities).")
        .def(
            "__getitem__",
            [](const PyConfig& c, const std::string& key) {
                const YAML::Node all = YAML::Load(config_to_yaml(c.cfg));
                if (!all[key]) throw py::key_error("no config key '" + key + "'");
                return python_of(all[key]);
            },
            py::arg("key"), "A resolved value: cfg['M'], cfg['patch_size'].")
        .def(
            "to_dict", [](const PyConfig& c) { return python_of(YAML::Load(config_to_yaml(c.cfg))); },
            "Every resolved key and value.")
        .def("__repr__", [](const PyConfig& c) {
            return "ips.Config(" + (c.path.empty() ? std::string("<text>") : std::string(py::repr(path_to_python(c.path)))) +
                   (c.overrides.empty() ? "" : ", " + std::to_string(c.overrides.size()) + " overrides") + ")";
        });
}

}  // namespace ips::python
