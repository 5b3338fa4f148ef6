// ips plot: learning curves of a run (metrics.jsonl) as a PNG.
#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <map>

#include "command.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"

namespace ips::cli {
namespace {

void plot_setup(CLI::App* sub) {
    auto metrics = std::make_shared<std::string>();
    auto out = std::make_shared<std::string>();
    sub->add_option("metrics", *metrics, "metrics.jsonl written by ips train")->required();
    sub->add_option("--out", *out, "PNG to write")->required();
    sub->callback([metrics, out] {
        std::ifstream in(*metrics);
        if (!in) throw std::runtime_error(*metrics + ": cannot open");
        std::vector<Series> losses{{"train loss", {}}, {"test loss", {}}};
        std::map<std::string, Series> task_metrics;
        std::vector<std::string> task_order;
        int line_no = 0;
        for (std::string line; std::getline(in, line);) {
            ++line_no;
            if (line.empty()) continue;
            nlohmann::json j;
            try {
                j = nlohmann::json::parse(line);
            } catch (const nlohmann::json::exception& e) {
                throw std::runtime_error(*metrics + ":" + std::to_string(line_no) + ": not JSON: " + e.what());
            }
            losses[0].values.push_back(j.value("train_loss", std::nan("")));
            losses[1].values.push_back(j.value("test_loss", std::nan("")));
            for (const auto& [task, m] : j["test"].items()) {
                for (const auto& [name, v] : m.items()) {
                    if (name == "loss") continue;
                    const std::string key = task + " " + name;
                    if (!task_metrics.count(key)) task_order.push_back(key), task_metrics[key].name = key;
                    task_metrics[key].values.push_back(v.is_number() ? v.get<double>() : std::nan(""));
                }
            }
        }
        std::vector<Series> metric_series;
        for (const auto& k : task_order) metric_series.push_back(task_metrics[k]);
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
