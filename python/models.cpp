// ips.Model: a checkpoint (ours, or a state dict in the reference's layout) on a device; predict()
// as `ips predict` makes it, select() as training selects, encode() as the encoder embeds.
#include <random>

#include "bind.h"
#include "ips/checkpoint.h"
#include "ips/dataset.h"
#include "ips/evaluate.h"
#include "ips/explain.h"
#include "ips/patch_source.h"
#include "ips/predict.h"
#include "ips/select.h"
#include "ips/torch_file.h"

namespace ips::python {
namespace {

struct PyModel {
    PyConfig config;
    IPSNet net{nullptr};
    torch::Device device = torch::kCPU;
};

py::object json_to_python(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

// What a prediction says, as tensors: probabilities per task, the selected patches best first and
// their attention, and (when made now) every patch's score, rank and whether the aggregator saw it.
py::dict prediction_dict(const nlohmann::json& j, const ScoredPatches& sp) {
    py::dict d;
    d["input"] = path_to_python(j.at("image").get<std::string>());
    d["N"] = j.at("N").get<int64_t>();
    py::dict probs;
    for (const auto& [task, p] : j.at("predictions").items())
        probs[py::str(task)] = torch::tensor(p.get<std::vector<double>>(), torch::kFloat64);
    d["probs"] = probs;
    d["selected"] = torch::tensor(j.at("selected").get<std::vector<int64_t>>(), torch::kLong);
    d["scores"] = torch::tensor(j.at("scores").get<std::vector<double>>(), torch::kFloat64);
    d["heatmap"] = j.contains("heatmap") ? py::object(path_to_python(j["heatmap"].get<std::string>())) : py::none();
    if (sp.scores.defined()) {
        d["patch_scores"] = sp.scores;
        d["patch_rank"] = sp.rank;
        d["kept"] = sp.kept;
    }
    d["json"] = json_to_python(j);
    return d;
}

PyModel model_make(const py::object& weights, const py::object& config, const py::object& device) {
    PyModel m;
    const std::string w = weights.is_none() ? "" : path_of(weights);
    if (!config.is_none()) {
        m.config = config.cast<PyConfig>();
    } else {
        if (w.empty()) throw std::invalid_argument("Model needs a config, or weights of an ips checkpoint that holds one");
        // An ips checkpoint carries the config it was trained with; a reference state dict does not.
        const std::string yaml = without_gil([&] { return checkpoint_meta(w).config_yaml; });
        if (yaml.empty()) throw std::invalid_argument(w + " holds no config (not an ips checkpoint): give config=");
        m.config.text = yaml;
        m.config.cfg = config_parse(yaml, {}, nullptr, w);
    }
    m.device = device_parse(device);
    without_gil([&] {
        m.net = net_make(m.config.cfg.model, m.config.cfg.compute, m.config.cfg.seed);
        if (w.empty()) initial_weights_apply(m.net);
        else weights_load(w, m.net);
        net_to(m.net, m.device);
        m.net->eval();
    });
    return m;
}

}  // namespace

void models_bind(py::module_& m) {
    py::class_<PyModel>(m, "Model", R"(An IPS model on a device.

Model(weights, config=None, device="cpu"): weights is an ips checkpoint (last.pt / best.pt, which
holds its config, so config may be left out) or a PyTorch state dict in the reference's layout
(then config= is needed); weights=None starts from the config's initial weights (encoder_weights).)")
        .def(py::init(&model_make), py::arg("weights") = py::none(), py::arg("config") = py::none(),
             py::arg("device") = "cpu")
        .def_property_readonly("config", [](const PyModel& m) { return m.config; })
        .def_property_readonly("device", [](const PyModel& m) { return m.device.str(); })
        .def_property_readonly("parameters", [](PyModel& m) { return parameter_count(*m.net); },
                               "The number of parameters.")
        .def(
            "to",
            [](PyModel& m, const py::object& device) -> PyModel& {
                m.device = device_parse(device);
                without_gil([&] { net_to(m.net, m.device); });
                return m;
            },
            py::arg("device"), "Moves the model (in place) and returns it.")
        .def(
            "predict",
            [](PyModel& m, const py::object& input_path, const py::object& heatmap, const py::object& out,
               const std::string& outputs, int64_t thumbnail_side, int heatmap_level, int64_t top_k, bool progress) {
                PredictOptions opt;
                const std::string input = path_of(input_path);
                opt.heatmap = heatmap.is_none() ? "" : path_of(heatmap);
                opt.progress = progress;
                opt.explain.thumbnail_side = thumbnail_side;
                opt.explain.heatmap_level = heatmap_level;
                opt.explain.top_k = top_k;
                if (out.is_none()) {
                    if (outputs != "all" && outputs != "none")
                        throw std::invalid_argument("outputs= names files written into out=: give out=");
                    const Prediction p =
                        without_gil([&] { return predict_input(m.net, m.config.cfg, m.device, input, opt); });
                    return prediction_dict(prediction_to_json(p), p.patches);
                }
                const std::string dir = path_of(out);
                explain_outputs_parse(outputs, opt.explain);
                const PredictionRecord r = without_gil([&] {
                    if (opt.explain.viewer) viewer_check();
                    return predict_recorded(m.net, m.config.cfg, m.device, input, dir, opt);
                });
                py::dict d = prediction_dict(r.json, r.patches);
                d["record"] = path_to_python(r.path);
                d["already_done"] = r.already_done;
                return d;
            },
            py::arg("input"), py::arg("heatmap") = py::none(), py::arg("out") = py::none(), py::arg("outputs") = "all",
            py::arg("thumbnail_side") = 2048, py::arg("heatmap_level") = -1, py::arg("top_k") = 16,
            py::arg("progress") = false,
            R"(Predicts one image, slide or feature bag, as `ips predict` does.

Returns a dict: probs {task: float64 [n_class]}, selected (int64 grid indices, most attended first),
scores (their attention), patch_scores / patch_rank / kept ([N] each, every patch), heatmap (the
PNG written, or None) and json (what `ips predict --json` prints). With out=DIR it writes
DIR/<stem>.json and the outputs (heatmap, overlay, geojson, gallery, viewer: `outputs`, "all" or
"none") into DIR/<stem>/ as `ips predict --out` does; a complete earlier record is kept
(already_done, and no patch_scores).)")
        .def(
            "select",
            [](PyModel& m, const torch::Tensor& patches, bool train, const py::object& seed, const py::object& M,
               const py::object& I) {
                if (patches.dim() < 3)
                    throw std::invalid_argument("select: patches must be [B, N, C, h, w] or [B, N, D], got " +
                                                c10::str(patches.sizes()));
                SelectOptions opt = m.config.cfg.select;
                if (!M.is_none()) opt.M = M.cast<int64_t>();
                if (!I.is_none()) opt.I = I.cast<int64_t>();
                std::mt19937_64 rng(seed.is_none() ? static_cast<uint64_t>(m.config.cfg.seed) : seed.cast<uint64_t>());
                const Selection s = without_gil([&] {
                    std::vector<PatchSourcePtr> owned;
                    std::vector<PatchSource*> sources;
                    for (int64_t b = 0; b < patches.size(0); ++b) {
                        owned.push_back(tensor_source_make(patches[b]));  // a view: nothing is copied
                        sources.push_back(owned.back().get());
                    }
                    return patches_select(m.net, sources, opt, train, m.device, rng);
                });
                return py::make_tuple(s.idx, s.scores, s.valid);
            },
            py::arg("patches"), py::arg("train") = false, py::arg("seed") = py::none(), py::arg("M") = py::none(),
            py::arg("I") = py::none(),
            R"(Iterative patch selection without gradients, as training and prediction run it.

patches: [B, N, C, h, w] pixels (float, or uint8 scaled to [0, 1]) or [B, N, D] features, on any
device; chunks of I go to the model's device. Returns (idx [B, M] int64, best first, -1 where
N < M; scores [B, M]; valid [B, M] bool). train=True shuffles as the config's shuffle_style says,
from `seed` (default: the config's).)")
        .def(
            "encode",
            [](PyModel& m, const torch::Tensor& patches) {
                return without_gil([&] {
                    torch::NoGradGuard no_grad;
                    auto x = patches.to(m.device);
                    if (x.scalar_type() == torch::kByte) x = x.to(torch::kFloat32).div_(255);  // as sources scale pixels
                    return m.net->embed(x);
                });
            },
            py::arg("patches"), "The encoder's embeddings [K, D] of patches [K, C, h, w] (uint8 scaled to [0, 1]) or [K, F] features, without gradients.")
        .def(
            "evaluate",
            [](PyModel& m, const std::string& split, bool progress) {
                const EvalResult r = without_gil([&] {
                    auto data = dataset_open(m.config.cfg, split);
                    return evaluate(m.net, m.config.cfg, *data, m.device, progress);
                });
                return eval_dict(m.config.cfg, r);
            },
            py::arg("split") = "test", py::arg("progress") = false,
            R"(Loss and each task's metric on a split of the config's data set, as `ips eval` reports them:
a dict with loss, n and per task {loss, <metric>}.)")
        .def(
            "save",
            [](PyModel& m, const py::object& file) {
                const std::string path = path_of(file);
                CheckpointMeta meta;
                meta.config_yaml = config_to_yaml(m.config.cfg);
                without_gil([&] { checkpoint_save(path, m.net, nullptr, meta); });
            },
            py::arg("path"),
            "Writes an ips checkpoint (atomically) holding the weights and the config: Model(path) loads it, "
            "and so do ips predict / eval --weights.")
        .def(
            "state_dict",
            [](PyModel& m) {
                py::object ordered = py::module_::import("collections").attr("OrderedDict")();
                for (auto& [name, t] : state_dict_of(*m.net)) ordered[py::str(name)] = t.detach();  // shares the storage
                return ordered;
            },
            "The weights in the reference implementation's layout, as an OrderedDict of the model's own tensors "
            "(no copies: writing to one changes the model). torch.save(model.state_dict(), f) is a file that "
            "ips and the reference both load.")
        .def("__repr__", [](PyModel& m) {
            return "ips.Model(" + encoder_name(m.config.cfg.model) + ", " + std::to_string(parameter_count(*m.net)) +
                   " parameters, on " + m.device.str() + ")";
        });
}

}  // namespace ips::python
