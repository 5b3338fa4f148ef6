// ips predict: probabilities per task, the selected patches and their attention, every patch's
// score as a heat map, overlay, GeoJSON, gallery and viewer (explain.h). With --out, one record
// per input (predict.h); that is what makes it resumable and lets several ranks (--nproc-per-node,
// torchrun) each take a share of the inputs.
#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <sys/resource.h>

#include "command.h"
#include "ips/checkpoint.h"
#include "ips/files.h"
#include "ips/inputs.h"
#include "ips/predict.h"

namespace ips::cli {
namespace {

struct PredictArgs {
    ConfigArgs config;
    RuntimeArgs runtime;
    DistArgs dist;
    std::string weights, heatmap, out, csv, outputs = "all";
    std::vector<std::string> inputs;
    ExplainOptions explain;
    bool json = false, quiet = false;
};

// The process's peak resident memory so far (a cohort's inputs share one process).
double peak_rss_mb() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return double(u.ru_maxrss) / 1024.0;  // Linux reports kilobytes
}

void print_times(const std::string& input, const PredictTimes& t) {
    std::fprintf(stderr,
                 "ips predict: %s: %lld patches; open %.2f s, selection %.2f s (encoder busy %.0f %%, waiting for "
                 "reads %.2f s), aggregation %.2f s, writing %.2f s; peak RSS %.0f MB\n",
                 input.c_str(), static_cast<long long>(t.patches), t.open, t.select, 100 * t.encoder_busy(), t.read_wait,
                 t.aggregate, t.write, peak_rss_mb());
}

nlohmann::json times_json(const std::string& input, const PredictTimes& t) {
    return {{"input", input},          {"patches", t.patches}, {"open_s", t.open},
            {"select_s", t.select},    {"encode_s", t.encode}, {"read_wait_s", t.read_wait},
            {"encoder_busy", t.encoder_busy()}, {"aggregate_s", t.aggregate}, {"write_s", t.write},
            {"write_heatmap_s", t.outputs.heatmap}, {"write_overlay_s", t.outputs.overlay},
            {"write_geojson_s", t.outputs.geojson}, {"write_gallery_s", t.outputs.gallery},
            {"write_viewer_s", t.outputs.viewer}, {"peak_rss_mb", peak_rss_mb()}};
}

void print_human(const nlohmann::json& j) {
    std::printf("%s (N = %lld)\n", j["image"].get<std::string>().c_str(), static_cast<long long>(j["N"].get<int64_t>()));
    for (const auto& [task, p] : j["predictions"].items()) {
        auto v = p.get<std::vector<double>>();
        const auto best = std::max_element(v.begin(), v.end()) - v.begin();
        std::printf("  %-10s argmax %lld (p %.3f):", task.c_str(), static_cast<long long>(best), v[best]);
        for (double x : v) std::printf(" %.3f", x);
        std::printf("\n");
    }
    const auto sel = j["selected"].get<std::vector<int64_t>>();
    const auto sc = j["scores"].get<std::vector<double>>();
    std::printf("  selected (best first):");
    for (size_t k = 0; k < sel.size() && k < 10; ++k) std::printf(" %lld (%.3f)", static_cast<long long>(sel[k]), sc[k]);
    std::printf("%s\n", sel.size() > 10 ? " ..." : "");
    if (j.contains("heatmap")) std::printf("  heat map: %s\n", j["heatmap"].get<std::string>().c_str());
}

void predict_setup(CLI::App* sub) {
    auto a = std::make_shared<PredictArgs>();
    config_args_add(sub, a->config, "YAML config the weights were trained with");
    runtime_args_add(sub, a->runtime);
    sub->add_option("inputs", a->inputs, "images, slides (OpenSlide formats, pyramidal TIFF), feature bags, or folders of them");
    sub->add_option("--csv", a->csv, "a CSV whose first column lists the inputs (relative to the CSV's folder)");
    sub->add_option("--weights", a->weights,
                    "ips checkpoint (last.pt / best.pt) or PyTorch state dict in the reference layout")
        ->required();
    sub->add_flag("--json", a->json, "one JSON object per input per line");
    sub->add_flag("--quiet", a->quiet, "no progress bar or timings on stderr");
    sub->add_option("--heatmap", a->heatmap, "write the heat map of every patch's score to this PNG");
    sub->add_option("--out", a->out,
                    "write OUT/<stem>.json per input, its outputs in OUT/<stem>/ and OUT/predictions.csv; a rerun "
                    "keeps complete inputs");
    CLI::Option* outputs = sub->add_option("--outputs", a->outputs,
                    "with --out: heatmap,overlay,geojson,gallery,viewer (any of them), all or none")
        ->capture_default_str();
    sub->add_option("--thumbnail-side", a->explain.thumbnail_side, "heat map: longer side of the thumbnail in pixels")
        ->capture_default_str()
        ->check(CLI::Range(int64_t(16), int64_t(8192)));
    sub->add_option("--heatmap-level", a->explain.heatmap_level, "heat map: draw over this pyramid level instead");
    sub->add_option("--top-k", a->explain.top_k, "patches in the gallery and the viewer's list")
        ->capture_default_str()
        ->check(CLI::Range(int64_t(1), int64_t(1000)));
    dist_args_add(sub, a->dist);
    sub->callback([a, outputs] {
        // Ranks share stdout, where their lines would interleave in no fixed order: the records
        // in --out are the result then, the same files one process writes. Checked before any
        // worker starts, so that the launcher says it once.
        if (a->out.empty() && (a->dist.nproc_per_node > 1 || dist_env_read().world_size > 1))
            throw std::runtime_error("predict on several ranks writes its results to files: give --out DIR");
        if (a->out.empty() && outputs->count() > 0)
            throw std::runtime_error("--outputs names files written into --out DIR: give --out DIR");
        const std::vector<std::string> inputs = predict_inputs_list(a->inputs, a->csv);
        ExplainOptions explain = a->explain;
        explain_outputs_parse(a->out.empty() ? "none" : a->outputs, explain);
        if (explain.viewer) viewer_check();  // before any work, not after each input's other outputs
        std::error_code ec;
        if (!a->out.empty() && std::filesystem::is_directory(a->out, ec)) stale_temporaries_remove(a->out);
        dist_args_launch(a->dist);
        const Config cfg = config_args_load(a->config);
        const torch::Device device = runtime_args_apply(a->runtime);
        IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
        weights_load(a->weights, net);
        net_to(net, device);
        if (!a->out.empty()) inputs_stems_distinct(inputs);  // the folder comes with the first record
        PredictOptions opt;
        opt.explain = explain;
        const DistEnv env = dist_env_read();
        opt.progress = !a->quiet && env.world_size == 1;
        auto one = [&](const std::string& input) {
            // Heat map names follow the whole list, not this rank's share, as one process names them.
            opt.heatmap = a->heatmap.empty() ? "" : heatmap_path_for(a->heatmap, input, inputs.size());
            nlohmann::json j;
            PredictTimes times;
            bool predicted = true;
            if (a->out.empty()) {
                const Prediction p = predict_input(net, cfg, device, input, opt);
                j = prediction_to_json(p);
                times = p.times;
            } else {
                const PredictionRecord r = predict_recorded(net, cfg, device, input, a->out, opt);
                if (!r.redone_why.empty())
                    std::fprintf(stderr, "ips predict: made %s again; the earlier record was incomplete: %s\n",
                                 input.c_str(), r.redone_why.c_str());
                if (r.already_done)
                    std::fprintf(stderr, "ips predict: %s: already done (%s)\n", input.c_str(), r.path.c_str());
                j = r.json;
                times = r.times;
                predicted = !r.already_done;
                if (predicted) text_append((std::filesystem::path(a->out) / "timings.jsonl").string(),
                                           times_json(input, times).dump() + "\n");
            }
            if (a->json) std::printf("%s\n", j.dump().c_str());
            else print_human(j);
            std::fflush(stdout);
            if (predicted && !a->quiet) print_times(input, times);
        };
        // One bad input must not cost the others; the table is written whatever failed.
        std::exception_ptr failed;
        try {
            inputs_for_each_share("predict", "inputs", inputs, env.rank, env.world_size, one);
        } catch (...) {
            failed = std::current_exception();
        }
        if (!a->out.empty()) {
            try {
                const int64_t rows = predictions_csv_write(a->out, inputs, cfg);
                if (!a->quiet)
                    std::fprintf(stderr, "ips predict: %s: %lld of %zu inputs\n",
                                 (std::filesystem::path(a->out) / "predictions.csv").string().c_str(),
                                 static_cast<long long>(rows), inputs.size());
            } catch (const std::exception& e) {
                if (!failed) throw;
                std::fprintf(stderr, "ips predict: cannot write predictions.csv: %s\n", e.what());  // and the inputs' failure below
            }
        }
        if (failed) std::rethrow_exception(failed);
    });
}

const CommandRegistration kPredict{
    {"predict", "class probabilities, every patch's score, heat maps, overlays and a viewer for images, slides and bags",
     predict_setup, 70}};

}  // namespace
}  // namespace ips::cli
