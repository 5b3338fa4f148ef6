// ips plot: learning curves of a run (metrics.jsonl) as a PNG.
#include <nlohmann/json.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "command.h"
#include "ips/config.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"

namespace ips::cli {
namespace {

// The chance level of each task's metric, keyed as the series are ("<task> <metric>"), from the
// run's config.yaml beside metrics.jsonl: a uniform guess among n_class classes for accuracy,
// 0.5 for ROC AUC, and for multi-label exact match 2^-n_class (the chance of guessing all n_class
// outputs right). Empty, with a note, when the run's config cannot be read.
std::map<std::string, double> chance_levels(const std::string& metrics_path) {
    std::map<std::string, double> out;
    const auto config = std::filesystem::path(metrics_path).parent_path() / "config.yaml";
    std::error_code ec;
    if (!std::filesystem::exists(config, ec)) {
        std::fprintf(stderr, "note: no %s, so no chance levels are drawn\n", config.c_str());
        return out;
    }
    try {
        std::vector<std::string> ignored;
        const Config cfg = config_load(config.string(), {}, &ignored);
        const double k = static_cast<double>(cfg.model.n_class);
        for (const auto& t : cfg.model.tasks) {
            const double level = t.metric == Metric::auc ? 0.5
                                 : t.metric == Metric::multilabel_accuracy ? std::pow(2.0, -k)
                                                                            : 1.0 / k;
            out[t.name + " " + metric_name(t.metric)] = level;
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "note: no chance levels drawn: %s\n", e.what());
    }
    return out;
}

void plot_setup(CLI::App* sub) {
    auto metrics = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    sub->add_option("metrics", *metrics, "metrics.jsonl written by ips train")->required();
    sub->add_option("--out", *out, "PNG to write")->required();
    sub->callback([metrics, out] {
        std::error_code ec;
        // A folder opens as an empty stream on Linux: it would plot as a run without epochs.
        if (std::filesystem::is_directory(*metrics, ec)) throw std::runtime_error(*metrics + ": is a directory");
        std::ifstream in(*metrics);
        if (!in) throw std::runtime_error(*metrics + ": cannot open: " + std::strerror(errno));
        std::vector<Series> losses{{"train loss", {}}, {"test loss", {}}};
        std::map<std::string, Series> task_metrics;
        std::vector<std::string> task_order;
        int line_no = 0;
        for (std::string line; std::getline(in, line);) {
            ++line_no;
            if (line.empty()) continue;
            const std::string where = *metrics + ":" + std::to_string(line_no);
            nlohmann::json j;
            try {
                j = nlohmann::json::parse(line);
            } catch (const nlohmann::json::exception& e) {
                throw std::runtime_error(where + ": not JSON: " + e.what());
            }
            // Well-formed JSON of another shape must not end in a json type_error without the file.
            if (!j.is_object()) throw std::runtime_error(where + ": not a JSON object (one epoch per line expected)");
            const auto number = [&](const char* key) {
                if (!j.contains(key) || j[key].is_null()) return std::nan("");  // JSON writes NaN as null
                if (!j[key].is_number()) throw std::runtime_error(where + ": '" + key + "' is not a number");
                return j[key].get<double>();
            };
            losses[0].values.push_back(number("train_loss"));
            losses[1].values.push_back(number("test_loss"));
            const nlohmann::json test = j.value("test", nlohmann::json::object());
            if (!test.is_object()) throw std::runtime_error(where + ": 'test' is not an object of tasks");
            for (const auto& [task, m] : test.items()) {
                if (!m.is_object()) throw std::runtime_error(where + ": 'test." + task + "' is not an object of metrics");
                for (const auto& [name, v] : m.items()) {
                    if (name == "loss") continue;
                    const std::string key = task + " " + name;
                    if (!task_metrics.count(key)) task_order.push_back(key), task_metrics[key].name = key;
                    task_metrics[key].values.push_back(v.is_number() ? v.get<double>() : std::nan(""));
                }
            }
        }
        if (losses[0].values.empty()) throw std::runtime_error(*metrics + ": no epochs (an empty metrics file)");
        std::vector<Series> metric_series;
        const auto chance = chance_levels(*metrics);
        for (const auto& k : task_order) {
            metric_series.push_back(task_metrics[k]);
            if (chance.count(k)) metric_series.back().chance = chance.at(k);
        }
        // Metrics (0..1) above, losses below: one picture, two scales.
        auto top = curve_render(metric_series, "test metrics per epoch");
        auto bottom = curve_render(losses, "loss per epoch");
        png_write(*out, torch::cat({top, bottom}, 1));
        std::printf("wrote %s (%zu epochs)\n", out->c_str(), losses[0].values.size());
    });
}

const CommandRegistration kPlot{{"plot", "learning curves of a run: ips plot RUN/metrics.jsonl --out curve.png", plot_setup, 80}};

}  // namespace
}  // namespace ips::cli
