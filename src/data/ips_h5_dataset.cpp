#include "ips/ips_h5_dataset.h"

#include "ips/dataset.h"
#include "ips/feature_bag.h"

namespace ips {
namespace {

// The reference's CAMELYON16 file: one group per slide with `img` [N, F] and attribute `label`;
// every task gets the slide's label.
struct ReferenceBagDataset : Dataset {
    ReferenceBagDataset(const Config& c, const std::string& split) : cfg(c) {
        if (cfg.model.is_image) throw ConfigError("config key 'is_image': the ips_h5 data set holds feature bags; set is_image: false");
        file = split_file(cfg.data, split, ".h5");
        groups = feature_bag_groups(file);
        if (groups.empty()) throw std::runtime_error("feature bag '" + file + "': no groups (one per slide expected)");
        // An empty group would only fail inside the model, mid-epoch and without its name.
        for (const auto& g : groups)
            if (g.n_rows == 0) throw std::runtime_error("feature bag '" + file + "': group '" + g.name + "' has no rows");
    }
    int64_t size() const override { return int64_t(groups.size()); }
    Example get(int64_t i) override {
        const BagGroup& g = groups.at(size_t(i));
        Example ex;
        ex.name = file + "#" + g.name;
        ex.source = feature_bag_source_open(file, g.name);
        for (const auto& task : cfg.model.tasks)
            ex.targets.push_back(target_parse(std::to_string(g.label), task, cfg.model.n_class, ex.name));
        return ex;
    }
    Config cfg;
    std::string file;
    std::vector<BagGroup> groups;
};

}  // namespace

DatasetPtr ips_h5_dataset_make(const Config& cfg, const std::string& split) {
    return std::make_shared<ReferenceBagDataset>(cfg, split);
}

}  // namespace ips
