// Data sets listed in files: a CSV of `path,label[,label...]` rows naming images, slides or feature
// bags (dataset: csv), and the reference implementation's single HDF5 file with a group per slide
// (dataset: ips_h5). Patches are read on demand; nothing is decoded before get().
#include <cctype>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>

#include "ips/csv_dataset.h"
#include "ips/dataset.h"
#include "ips/feature_bag.h"
#include "ips/input_open.h"
#include "ips/tissue.h"

namespace ips {
namespace fs = std::filesystem;
namespace {

std::string trim(const std::string& s) {
    size_t a = 0, b = s.size();
    while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
    while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
    return s.substr(a, b - a);
}

std::string lower(std::string s) {
    for (auto& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

struct Row {
    std::string path;
    std::vector<std::string> labels;
    std::string where;  // file:line, for messages
};

std::vector<Row> csv_read(const std::string& file, size_t n_tasks) {
    std::error_code ec;
    if (fs::is_directory(file, ec)) throw std::runtime_error("data set '" + file + "': is a directory");
    std::ifstream in(file);
    if (!in) throw std::runtime_error("data set '" + file + "': cannot open");
    std::vector<Row> rows;
    std::string line;
    for (int64_t number = 1; std::getline(in, line); ++number) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (number == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 BOM (spreadsheets)
        if (trim(line).empty() || trim(line)[0] == '#') continue;
        // Split at every comma, so a trailing empty cell (a multi-label task with no class present,
        // as spreadsheets write it) is a cell too; getline would drop it.
        std::vector<std::string> cells;
        for (size_t from = 0;;) {
            const size_t comma = line.find(',', from);
            cells.push_back(trim(line.substr(from, comma == std::string::npos ? std::string::npos : comma - from)));
            if (comma == std::string::npos) break;
            from = comma + 1;
        }
        if (rows.empty() && !cells.empty() && lower(cells[0]) == "path") continue;  // header
        const std::string where = file + ":" + std::to_string(number);
        if (cells.empty() || cells[0].empty()) throw std::runtime_error(where + ": the row has no path");
        if (cells.size() != 1 + n_tasks)
            throw std::runtime_error(where + ": " + std::to_string(n_tasks) + " label column(s) expected (one per task), found " +
                                     std::to_string(cells.size() - 1) + " (several classes of one task go in one cell, split by ';')");
        Row r;
        r.path = fs::path(cells[0]).is_absolute() ? cells[0] : (fs::path(file).parent_path() / cells[0]).string();
        r.labels.assign(cells.begin() + 1, cells.begin() + 1 + n_tasks);
        r.where = where;
        rows.push_back(std::move(r));
    }
    if (rows.empty()) throw std::runtime_error("data set '" + file + "': no rows");
    return rows;
}

struct CsvDataset : Dataset {
    CsvDataset(const Config& c, const std::string& split) : cfg(c) {
        const std::string file = split_file(cfg.data, split, ".csv");
        std::vector<std::string> bad;
        for (auto& r : csv_read(file, cfg.model.tasks.size())) {
            if (bag_path_is(r.path) && cfg.model.is_image)
                throw ConfigError("config key 'is_image': " + r.where + " names a feature bag; set is_image: false");
            if (!bag_path_is(r.path) && !cfg.model.is_image)
                throw ConfigError("config key 'is_image': " + r.where + " names an image, the config expects feature bags");
            // A wrong label is the CSV's fault: fatal. An unreadable file is reported and left out.
            for (size_t t = 0; t < cfg.model.tasks.size(); ++t) target_parse(r.labels[t], cfg.model.tasks[t], cfg.model.n_class, r.where);
            // Open every file and make its tile grid now, so a bad one is not found mid-epoch.
            try {
                if (bag_path_is(r.path)) bag_check(r, *bag_source_open(r.path));
                else grid_of(r, *slide_open(r.path));
                rows.push_back(std::move(r));
            } catch (const ConfigError&) {
                throw;
            } catch (const std::exception& e) {
                bad.push_back(r.where + ": " + e.what());
            }
        }
        for (const auto& b : bad) std::fprintf(stderr, "warning: skipped %s\n", b.c_str());
        if (rows.empty() && !bad.empty())
            throw std::runtime_error("data set '" + file + "': no usable rows; skipped " + bad.front() +
                                     (bad.size() > 1 ? " (and " + std::to_string(bad.size() - 1) + " more rows)" : ""));
        if (rows.empty()) throw std::runtime_error("data set '" + file + "': no usable rows");
        if (!bad.empty())
            std::fprintf(stderr, "warning: %s: %zu of %zu rows skipped (above)\n", file.c_str(), bad.size(), bad.size() + rows.size());
    }
    // An empty bag, or one of another width than the projector takes, would only fail inside the
    // model, mid-epoch and without its name.
    void bag_check(const Row& r, PatchSource& bag) const {
        if (bag.size() == 0)
            throw std::runtime_error("feature bag '" + bag_file_of(r.path) + "': no rows (a slide without tissue tiles?)");
        const int64_t width = bag.patch_shape().at(0);
        if (width != cfg.model.n_chan_in)
            throw std::runtime_error("feature bag '" + bag_file_of(r.path) + "': features have " + std::to_string(width) +
                                     " columns, the config's n_chan_in is " + std::to_string(cfg.model.n_chan_in));
    }
    // The tile grid of a slide, made once: tissue detection decodes a thumbnail. Whole images
    // (decoded and resized in get()) have none.
    std::shared_ptr<const TileGrid> grid_of(const Row& r, Slide& slide) {
        if (image_decoded_whole(slide, cfg.data)) return nullptr;
        {
            std::lock_guard<std::mutex> lock(mutex);
            auto it = grids.find(r.path);
            if (it != grids.end()) return it->second;
        }
        auto grid = std::make_shared<const TileGrid>(tile_grid_make(slide, cfg.data));  // outside the lock
        std::lock_guard<std::mutex> lock(mutex);
        return grids.emplace(r.path, grid).first->second;
    }
    int64_t size() const override { return int64_t(rows.size()); }

    PatchSourcePtr image_source(const Row& r) {
        SlidePtr slide = slide_open(r.path);
        return image_source_open(slide, grid_of(r, *slide).get(), cfg);
    }

    Example get(int64_t i) override {
        const Row& r = rows.at(size_t(i));
        Example ex;
        ex.name = r.path;
        ex.source = bag_path_is(r.path) ? bag_source_open(r.path) : image_source(r);
        for (size_t t = 0; t < cfg.model.tasks.size(); ++t) ex.targets.push_back(target_parse(r.labels[t], cfg.model.tasks[t], cfg.model.n_class, r.where));
        return ex;
    }

    Config cfg;
    std::vector<Row> rows;
    std::mutex mutex;
    std::map<std::string, std::shared_ptr<const TileGrid>> grids;
};

}  // namespace

DatasetPtr csv_dataset_make(const Config& cfg, const std::string& split) {
    return std::make_shared<CsvDataset>(cfg, split);
}

}  // namespace ips
