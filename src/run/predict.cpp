#include "ips/predict.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <cerrno>
#include <cstring>
#include <set>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include "ips/files.h"
#include "ips/heatmap.h"
#include "ips/image_io.h"
#include "ips/progress.h"
#include "ips/step.h"

namespace ips {
namespace fs = std::filesystem;
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// png_write renames a whole file into place, so a PNG without its trailer was damaged afterwards.
bool png_whole(const std::string& path) {
    static const std::string signature("\x89PNG\r\n\x1a\n", 8), trailer("\0\0\0\0IEND\xae\x42\x60\x82", 12);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return false;
    const std::string bytes = file_read(path);
    return bytes.size() >= signature.size() + trailer.size() && bytes.compare(0, 8, signature) == 0 &&
           bytes.compare(bytes.size() - trailer.size(), trailer.size(), trailer) == 0;
}

// Whether an output file of explain.h is there and whole (each is renamed into place whole; this
// catches one damaged afterwards).
std::string output_problem(const fs::path& file) {
    std::error_code ec;
    if (!fs::is_regular_file(file, ec)) return file.string() + " is missing";
    const std::string ext = file.extension().string();
    if (ext == ".png" && !png_whole(file.string())) return file.string() + " is not a whole PNG";
    if (ext == ".geojson") {
        std::ifstream in(file, std::ios::binary | std::ios::ate);
        const auto size = int64_t(in.tellg());
        std::string tail(4, '\0');
        if (size >= 4) in.seekg(size - 4), in.read(&tail[0], 4);
        if (size < 4 || tail != "\n]}\n") return file.string() + " is cut short";
    }
    if (ext == ".tif" && fs::file_size(file, ec) < 8) return file.string() + " is cut short";
    return "";
}

// The first cell of a CSV line, trimmed, unquoted as csv_cell quotes ("a ""b"", c" -> a "b", c).
std::string csv_first_cell(const std::string& line) {
    size_t at = line.find_first_not_of(" \t");
    if (at == std::string::npos) return "";
    std::string cell;
    if (line[at] == '"') {
        for (++at; at < line.size(); ++at) {
            if (line[at] == '"' && at + 1 < line.size() && line[at + 1] == '"') cell += '"', ++at;
            else if (line[at] == '"') break;
            else cell += line[at];
        }
        return cell;
    }
    cell = line.substr(at, line.find(',', at) - at);
    cell.erase(cell.find_last_not_of(" \t") + 1);
    return cell;
}

std::string csv_cell(const std::string& s) {
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
}

}  // namespace

std::string heatmap_path_for(const std::string& base, const std::string& input, size_t n_inputs) {
    if (n_inputs == 1) return base;
    const fs::path p(base);
    return (p.parent_path() / (p.stem().string() + "_" + input_stem(input) + p.extension().string())).string();
}

Prediction predict_input(IPSNet& net, const Config& cfg, const torch::Device& device, const std::string& path,
                         const PredictOptions& opt) {
    auto t0 = std::chrono::steady_clock::now();
    OpenedInput in = input_open(path, cfg);
    Prediction p;
    p.times.open = seconds_since(t0);
    Example ex;
    ex.source = in.source;
    ex.name = path;
    std::mt19937_64 rng(static_cast<uint64_t>(cfg.seed));
    t0 = std::chrono::steady_clock::now();
    SelectExtras extras;
    extras.logits = extras.timed = true;
    std::unique_ptr<Progress> bar;
    if (opt.progress) {
        bar = std::make_unique<Progress>(fs::path(path).filename().string(), ex.source->size(), "patches");
        extras.on_patches = [&bar](int64_t n) { bar->update(n); };
    }
    Inference inf;
    try {
        inf = infer_step(net, cfg, {ex}, device, rng, extras);
    } catch (...) {
        if (bar) std::fprintf(stderr, "\n");  // the error's line after the bar, not on it
        throw;
    }
    if (bar) bar->finish();
    const double infer_s = seconds_since(t0);
    const SelectTimes& st = inf.batch.times;
    p.times.select = st.total;
    p.times.encode = st.encode;
    p.times.read_wait = st.read_wait;
    p.times.patches = ex.source->size();
    p.times.aggregate = std::max(0.0, infer_s - st.total);

    p.input = path;
    p.N = ex.source->size();
    for (size_t t = 0; t < cfg.model.tasks.size(); ++t) {
        auto probs = inf.probs[t][0].to(torch::kCPU, torch::kFloat64).contiguous();
        p.task_names.push_back(cfg.model.tasks[t].name);
        p.probs.emplace_back(probs.data_ptr<double>(), probs.data_ptr<double>() + probs.numel());
    }
    const auto valid = inf.batch.valid[0].to(torch::kCPU);
    const auto kept = inf.batch.idx[0].to(torch::kCPU).index({valid});
    p.patches = scored_patches_make(inf.patch_scores[0], std::vector<int64_t>(kept.data_ptr<int64_t>(),
                                                                              kept.data_ptr<int64_t>() + kept.numel()));
    // The kept patches by their attention (their scores), ties in grid order: the order the
    // whole-image ranking gives them too.
    const auto kept_sorted = std::get<0>(kept.sort());
    const auto kept_scores = p.patches.scores.index_select(0, kept_sorted);
    const auto by_score = std::get<1>(kept_scores.sort(/*stable=*/true, 0, /*descending=*/true));
    for (int64_t k = 0; k < by_score.numel(); ++k) {
        const int64_t i = by_score[k].item<int64_t>();
        p.selected.push_back(kept_sorted[i].item<int64_t>());
        p.scores.push_back(kept_scores[i].item<double>());
    }

    t0 = std::chrono::steady_clock::now();
    const bool drawable = in.geometry.xy.defined();
    if (!opt.heatmap.empty()) {
        if (!drawable) throw std::runtime_error("'" + path + "': a heat map needs patch coordinates, which this bag lacks");
        const auto folder = fs::path(opt.heatmap).parent_path();
        if (!folder.empty()) fs::create_directories(folder);  // only now: a failed input leaves no folder
        heatmap_png_write(opt.heatmap, in, p.patches, opt.explain);
        p.heatmap = opt.heatmap;
    }
    if (!opt.explain_dir.empty())
        p.times.outputs = explain_write(opt.explain_dir, in, p.patches, prediction_to_json(p), opt.explain);
    p.times.write = seconds_since(t0);
    return p;
}

nlohmann::json prediction_to_json(const Prediction& p) {
    nlohmann::json j;
    j["image"] = p.input;
    j["N"] = p.N;
    for (size_t t = 0; t < p.task_names.size(); ++t) j["predictions"][p.task_names[t]] = p.probs[t];
    j["selected"] = p.selected;
    j["scores"] = p.scores;
    if (!p.heatmap.empty()) j["heatmap"] = p.heatmap;
    return j;
}

std::string prediction_record_path(const std::string& out_dir, const std::string& input) {
    return (fs::path(out_dir) / (input_stem(input) + ".json")).string();
}

std::string prediction_outputs_dir(const std::string& out_dir, const std::string& input) {
    return (fs::path(out_dir) / input_stem(input)).string();
}

OutputCheck prediction_record_check(const std::string& record, const std::string& input, const Config& cfg,
                                    const std::string& heatmap_out, const std::string& outputs_dir,
                                    const ExplainOptions& explain) {
    std::error_code ec;
    if (!fs::exists(record, ec)) return {};
    auto bad = [&](const std::string& why) { return OutputCheck{OutputCheck::incomplete, record + ": " + why}; };
    try {
        const auto j = nlohmann::json::parse(file_read(record));
        if (!j.is_object()) return bad("not a JSON object");
        if (j.at("image").get<std::string>() != input)
            return bad("the record of " + j["image"].dump() + ", not of " + input);
        if (!j.at("N").is_number_integer()) return bad("N is not an integer");
        for (const auto& task : cfg.model.tasks) {
            const auto p = j.at("predictions").at(task.name).get<std::vector<double>>();
            if (static_cast<int>(p.size()) != cfg.model.n_class)
                return bad("task '" + task.name + "' has " + std::to_string(p.size()) + " probabilities, not " +
                           std::to_string(cfg.model.n_class));
        }
        if (j.at("predictions").size() != cfg.model.tasks.size())
            return bad("predictions of other tasks than the config's");
        if (j.at("selected").get<std::vector<int64_t>>().size() != j.at("scores").get<std::vector<double>>().size())
            return bad("as many scores as selected patches expected");
        const std::string heatmap = j.value("heatmap", "");
        if (heatmap != heatmap_out)
            return bad("heat map " + (heatmap.empty() ? "(none)" : heatmap) + ", not " +
                       (heatmap_out.empty() ? "(none)" : heatmap_out));
        if (!heatmap.empty() && !png_whole(heatmap)) return bad("its heat map " + heatmap + " is not a whole PNG");
        if (!outputs_dir.empty())
            for (const auto& f : explain_files(explain, !bag_path_is(input), input_has_coords(input))) {
                const std::string problem = output_problem(fs::path(outputs_dir) / f);
                if (!problem.empty()) return bad("its output " + problem);
            }
    } catch (const std::exception& e) {
        return bad(e.what());
    }
    return {OutputCheck::complete, ""};
}

PredictionRecord predict_recorded(IPSNet& net, const Config& cfg, const torch::Device& device,
                                  const std::string& input, const std::string& out_dir, const PredictOptions& opt) {
    PredictionRecord r;
    r.path = prediction_record_path(out_dir, input);
    PredictOptions here = opt;
    here.explain_dir = prediction_outputs_dir(out_dir, input);
    const OutputCheck before = prediction_record_check(r.path, input, cfg, opt.heatmap, here.explain_dir, opt.explain);
    if (before.state == OutputCheck::complete) {
        r.json = nlohmann::json::parse(file_read(r.path));
        r.already_done = true;
        return r;
    }
    r.redone_why = before.why;
    const Prediction p = predict_input(net, cfg, device, input, here);
    r.json = prediction_to_json(p);
    r.times = p.times;
    r.patches = p.patches;
    fs::create_directories(out_dir);  // with the first record: a failed input leaves no folder
    text_write_atomic(r.path, r.json.dump() + "\n");
    return r;
}

std::vector<std::string> predict_inputs_list(const std::vector<std::string>& paths, const std::string& csv) {
    static const std::set<std::string> kExtensions = {".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms",
                                                      ".vmu", ".bif", ".svslide", ".jpg", ".jpeg", ".png", ".webp",
                                                      ".jp2", ".h5", ".hdf5"};
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& p : paths) {
        if (!fs::is_directory(p, ec)) {
            out.push_back(p);  // a missing file is that input's error, reported with the others
            continue;
        }
        std::vector<std::string> found;
        for (const auto& e : fs::directory_iterator(p)) {
            std::string ext = e.path().extension().string();
            for (auto& c : ext) c = char(std::tolower(static_cast<unsigned char>(c)));
            if (e.is_regular_file() && kExtensions.count(ext)) found.push_back(e.path().string());
        }
        if (found.empty()) throw std::runtime_error("folder '" + p + "': no images, slides or feature bags in it");
        std::sort(found.begin(), found.end());
        out.insert(out.end(), found.begin(), found.end());
    }
    if (!csv.empty()) {
        if (fs::is_directory(csv, ec)) throw std::runtime_error("--csv '" + csv + "': is a directory");
        std::ifstream in(csv);
        if (!in) throw std::runtime_error("--csv '" + csv + "': cannot open");
        std::string line;
        bool first = true;
        for (int64_t number = 1; std::getline(in, line); ++number) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 BOM (spreadsheets)
            std::string cell = csv_first_cell(line);
            if (cell.empty() || cell[0] == '#') continue;
            std::string lower = cell;
            for (auto& c : lower) c = char(std::tolower(static_cast<unsigned char>(c)));
            const bool header = first && lower == "path";
            first = false;
            if (header) continue;
            out.push_back(fs::path(cell).is_absolute() ? cell : (fs::path(csv).parent_path() / cell).string());
        }
    }
    if (out.empty()) throw std::runtime_error(csv.empty() ? "no inputs given" : "--csv '" + csv + "': no rows");
    return out;
}

int64_t predictions_csv_write(const std::string& out_dir, const std::vector<std::string>& inputs, const Config& cfg) {
    std::error_code ec;
    if (!fs::is_directory(out_dir, ec)) return 0;  // nothing was predicted: a failed job leaves no folder
    // Ranks finish in any order and each writes the table once its share is done. Under the lock,
    // the last writer has seen every rank's records, so its table is the one that stays.
    const std::string lock_path = (fs::path(out_dir) / ".predictions.lock").string();
    const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (lock_fd < 0) throw std::runtime_error("cannot open " + lock_path + ": " + std::strerror(errno));
    struct Unlock {
        int fd;
        ~Unlock() { ::close(fd); }  // closing releases the flock
    } unlock{lock_fd};
    if (::flock(lock_fd, LOCK_EX) != 0) throw std::runtime_error("cannot lock " + lock_path + ": " + std::strerror(errno));
    std::string text = "input";
    for (const auto& task : cfg.model.tasks) {
        for (int k = 0; k < cfg.model.n_class; ++k) text += "," + csv_cell(task.name + "_p" + std::to_string(k));
        text += "," + csv_cell(task.name + "_class");
    }
    text += "\n";
    int64_t rows = 0;
    for (const auto& input : inputs) {
        const std::string record = prediction_record_path(out_dir, input);
        if (!fs::exists(record, ec)) continue;
        std::string row = csv_cell(input);
        try {
            const auto j = nlohmann::json::parse(file_read(record));
            if (j.at("image").get<std::string>() != input) continue;
            for (const auto& task : cfg.model.tasks) {
                const auto p = j.at("predictions").at(task.name).get<std::vector<double>>();
                if (int(p.size()) != cfg.model.n_class) throw std::runtime_error("wrong number of classes");
                char num[32];
                for (double v : p) std::snprintf(num, sizeof num, "%.6g", v), row += std::string(",") + num;
                std::string cls;
                if (task.act_fn == ActFn::softmax) {
                    cls = std::to_string(std::max_element(p.begin(), p.end()) - p.begin());
                } else {
                    for (size_t k = 0; k < p.size(); ++k)
                        if (p[k] >= 0.5) cls += (cls.empty() ? "" : ";") + std::to_string(k);
                }
                row += "," + cls;
            }
        } catch (const std::exception&) {
            continue;  // a damaged record, or one of another config: the next run predicts it again
        }
        text += row + "\n";
        ++rows;
    }
    text_write_atomic((fs::path(out_dir) / "predictions.csv").string(), text);
    return rows;
}

}  // namespace ips
