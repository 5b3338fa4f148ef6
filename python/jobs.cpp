// ips.train, ips.features, ips.tiles: the CLI's jobs with its semantics (outputs made atomically, a
// rerun keeps what is complete, one bad slide is reported and the others go on), a callback after
// each epoch or slide, and Ctrl-C: a run stops after the current step with a checkpoint that
// resume=True continues exactly, features after the current batch of tiles (no bag of that slide),
// tiles after the current slide; all then raise KeyboardInterrupt.
#include <csignal>

#include "bind.h"
#include "ips/checkpoint.h"
#include "ips/features.h"
#include "ips/inputs.h"
#include "ips/interrupt.h"
#include "ips/tiles.h"
#include "ips/train.h"

namespace ips::python {
namespace {

using namespace pybind11::literals;

py::dict epoch_dict(const Config& cfg, const EpochRecord& e) {
    py::dict d;
    d["epoch"] = e.epoch;
    d["train_loss"] = e.train_loss;
    d["test"] = eval_dict(cfg, e.test);
    return d;
}

// One path, or an iterable of them.
std::vector<std::string> paths_of(const py::object& slides) {
    if (py::isinstance<py::str>(slides) || py::isinstance<py::bytes>(slides) || py::hasattr(slides, "__fspath__"))
        return {path_of(slides)};
    std::vector<std::string> out;
    for (const auto& s : slides) out.push_back(path_of(s));
    return out;
}

// A slide's result, made while the GIL is held (a dict is a Python object).
template <typename F>
std::shared_ptr<py::dict> py_dict_of(F&& make) {
    py::gil_scoped_acquire held;
    return std::shared_ptr<py::dict>(new py::dict(make()), [](py::dict* d) {
        py::gil_scoped_acquire again;
        delete d;
    });
}

// Adds a slide's result to the list and tells the callback. An exception of the callback ends the
// job (it is no failure of the slide): KeyboardInterrupt as Ctrl-C does, others as themselves.
void slide_report(py::list& results, const py::object& on_slide, const std::shared_ptr<py::dict>& d) {
    py::gil_scoped_acquire held;
    results.append(*d);
    if (on_slide.is_none()) return;
    try {
        on_slide(*d);
    } catch (py::error_already_set& e) {
        if (e.matches(PyExc_KeyboardInterrupt))
            throw Interrupted(SIGINT, "stopped in on_slide after " + path_of((*d)["slide"]) +
                                          "; the outputs made so far are complete: the same call makes only the rest");
        throw CallbackFailed{std::move(e)};
    }
}

// One slide at a time, with the CLI's semantics; Ctrl-C is asked for between slides.
void slides_each(const char* command, const std::vector<std::string>& slides,
                 const std::function<void(const std::string&)>& one) {
    inputs_stems_distinct(slides);
    inputs_for_each(command, "slides", slides, [&](const std::string& path) {
        python_signals_check("stopped before " + path + "; the outputs made so far are complete: the same call makes only the rest");
        one(path);
    });
}

}  // namespace

py::dict eval_dict(const Config& cfg, const EvalResult& r) {
    py::dict d;
    d["loss"] = r.loss;
    d["n"] = r.n;
    for (size_t t = 0; t < cfg.model.tasks.size() && t < r.task_metric.size(); ++t) {
        py::dict task;
        task["loss"] = t < r.task_loss.size() ? r.task_loss[t] : 0.0;
        task[py::str(metric_name(cfg.model.tasks[t].metric))] = r.task_metric[t];
        d[py::str(cfg.model.tasks[t].name)] = task;
    }
    return d;
}

void jobs_bind(py::module_& m) {
    m.def(
        "train",
        [](const PyConfig& config, const py::object& out, const py::object& device, bool resume,
           const py::object& weights, const py::object& stop_after, bool progress, const py::object& on_epoch) {
            RunOptions opt;
            opt.out_dir = path_of(out);
            opt.device = device_parse(device);
            opt.resume = resume;
            opt.progress = progress;
            opt.init_weights = weights.is_none() ? "" : path_of(weights);
            opt.stop_after_epoch = stop_after.is_none() ? -1 : stop_after.cast<int>();
            const Config& cfg = config.cfg;
            if (!on_epoch.is_none())
                opt.on_epoch = [&](const EpochRecord& e) {
                    py::gil_scoped_acquire held;
                    on_epoch(epoch_dict(cfg, e));
                };
            const auto records = without_gil([&] { return train_run(cfg, opt); });
            py::list l;
            for (const auto& e : records) l.append(epoch_dict(cfg, e));
            return l;
        },
        py::arg("config"), py::arg("out"), py::arg("device") = "auto", py::arg("resume") = false,
        py::arg("weights") = py::none(), py::arg("stop_after") = py::none(), py::arg("progress") = true,
        py::arg("on_epoch") = py::none(),
        R"(Trains as `ips train` does: OUT/config.yaml, metrics.jsonl, last.pt, best.pt.

Returns the epochs run here as dicts (epoch, train_loss, test: loss, n and per task its loss and
metric); on_epoch(dict) is called after each epoch's checkpoint. resume=True continues from
OUT/last.pt. Ctrl-C (or SIGTERM) stops after the current step with last.pt written there, then
raises KeyboardInterrupt; resume=True continues exactly there.)");

    m.def(
        "features",
        [](const PyConfig& config, const py::object& slides, const py::object& out_dir, const std::string& encoder,
           const py::object& weights_file, const std::string& dtype, int64_t batch, const py::object& device,
           bool progress, const py::object& on_slide) {
            FeaturesOptions opt;
            if (dtype == "float16") opt.dtype = torch::kHalf;
            else if (dtype == "float32") opt.dtype = torch::kFloat32;
            else throw std::invalid_argument("dtype must be float16 or float32, not '" + dtype + "'");
            opt.batch = batch;
            opt.progress = progress;
            const std::vector<std::string> paths = paths_of(slides);
            const std::string out = path_of(out_dir), weights = weights_file.is_none() ? "" : path_of(weights_file);
            const torch::Device dev = device_parse(device);
            py::list results;
            without_gil([&] {
                const Config cfg = config_reload(config, features_encoder_overrides(encoder, weights));
                features_config_check(cfg);
                IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
                initial_weights_apply(net);
                net_to(net, dev);
                net->eval();
                slides_each("features", paths, [&](const std::string& path) {
                    // Ctrl-C is asked for between batches too: a slide of a foundation model takes minutes.
                    opt.on_batch = [&](int64_t done, int64_t total) {
                        python_signals_check("stopped in " + path + " after " + std::to_string(done) + " of " +
                                             std::to_string(total) + " tiles, before its bag was written; the bags "
                                             "made so far are complete: the same call makes only the rest");
                    };
                    const FeaturesResult r = features_extract(net, cfg, dev, path, out, opt);
                    slide_report(results, on_slide,
                                 py_dict_of([&] {
                                     return py::dict("slide"_a = path_to_python(path), "out"_a = path_to_python(r.out), "already_done"_a = r.already_done,
                                                     "redone_why"_a = r.redone_why, "tiles"_a = r.n_tiles, "dim"_a = r.dim);
                                 }));
                });
            });
            return results;
        },
        py::arg("config"), py::arg("slides"), py::arg("out") = "features", py::arg("encoder") = "",
        py::arg("weights") = py::none(), py::arg("dtype") = "float16", py::arg("batch") = 64, py::arg("device") = "auto",
        py::arg("progress") = true, py::arg("on_slide") = py::none(),
        R"(Feature bags of slides as `ips features` makes them: OUT/<stem>.h5 (features, coords).

encoder= and weights= as --encoder and --weights (a ViT preset brings its tile side, resolution,
normalisation and D; the config's own overrides win over them). A bad slide is reported and the
others go on; then RuntimeError names the failed ones. A rerun keeps complete bags. Ctrl-C stops
after the current batch of tiles, writing no bag of that slide, and raises KeyboardInterrupt: the
same call later makes only the missing bags. Returns one dict per slide; on_slide(dict) is called
after each.)");

    m.def(
        "tiles",
        [](const py::object& slides, const py::object& out_dir, int64_t patch, int64_t stride, int level, double mpp,
           double min_tissue, int64_t thumb, const py::object& on_slide) {
            TilesOptions opt;
            opt.patch = patch, opt.stride = stride, opt.level = level, opt.mpp = mpp, opt.min_tissue = min_tissue;
            opt.thumb = thumb;
            const std::vector<std::string> paths = paths_of(slides);
            const std::string out = path_of(out_dir);
            py::list results;
            without_gil([&] {
                slides_each("tiles", paths, [&](const std::string& path) {
                    const TilesResult r = tiles_write(opt, out, path);
                    slide_report(results, on_slide, py_dict_of([&] {
                                     return py::dict("slide"_a = path_to_python(path), "stem"_a = path_to_python(r.stem), "tiles"_a = r.tiles,
                                                     "grid_tiles"_a = r.grid_tiles, "level"_a = r.level,
                                                     "threshold"_a = r.threshold, "already_done"_a = r.already_done);
                                 }));
                });
            });
            return results;
        },
        py::arg("slides"), py::arg("out") = "tiles", py::arg("patch") = 256, py::arg("stride") = 0,
        py::arg("level") = 0, py::arg("mpp") = 0.0, py::arg("min_tissue") = 0.01, py::arg("thumb") = 2048,
        py::arg("on_slide") = py::none(),
        R"(Tissue tiles of slides as `ips tiles` writes them: OUT/<stem>.csv (level-0 x, y), .png, .json.)");
}

}  // namespace ips::python
