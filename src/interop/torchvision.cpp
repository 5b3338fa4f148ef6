// torchvision ResNet key names <-> our trunk's numbered keys; the tensors go through torch_file.
#include "ips/torchvision.h"

#include <algorithm>
#include <cstring>

#include "ips/torch_file.h"

namespace ips {
namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
    return s.compare(0, prefix.size(), prefix) == 0;
}

struct TrunkPrefix {
    const char* torchvision;
    const char* trunk;
    int block;  // 0 for the stem, else the residual stage (layerN)
};

const TrunkPrefix kTrunkPrefixes[] = {
    {"conv1.", "0.", 0}, {"bn1.", "1.", 0},    {"layer1.", "4.", 1},
    {"layer2.", "5.", 2}, {"layer3.", "6.", 3}, {"layer4.", "7.", 4},
};

std::string torchvision_key_from_trunk(const std::string& key) {
    for (const auto& p : kTrunkPrefixes)
        if (starts_with(key, p.trunk)) return p.torchvision + key.substr(std::strlen(p.trunk));
    return key;
}

}  // namespace

std::string trunk_key_from_torchvision(const std::string& key, int n_res_blocks) {
    if (starts_with(key, "fc.")) return "";
    for (const auto& p : kTrunkPrefixes) {
        if (!starts_with(key, p.torchvision)) continue;
        if (p.block > n_res_blocks) return "";
        return p.trunk + key.substr(std::strlen(p.torchvision));
    }
    return key;  // not a ResNet key: left as is, so it is reported as unexpected
}

void trunk_load_torchvision(torch::nn::Sequential& trunk, const std::string& path, int n_res_blocks) {
    NamedTensors sd = torch_file_read(path);
    // Weights saved from nn.DataParallel carry a "module." prefix on every key.
    const bool wrapped = !sd.empty() && std::all_of(sd.begin(), sd.end(), [](const auto& kv) {
        return starts_with(kv.first, "module.");
    });
    NamedTensors mapped;
    for (auto& [k, t] : sd) {
        const std::string key = wrapped ? k.substr(7) : k;
        const std::string m = trunk_key_from_torchvision(key, n_res_blocks);
        if (!m.empty()) mapped.emplace_back(m, t);
    }
    // Messages name the torchvision key the user knows, with the trunk key beside it.
    auto shown = [](const std::string& trunk_key) {
        const std::string tv = torchvision_key_from_trunk(trunk_key);
        return tv == trunk_key ? tv : tv + " [trunk " + trunk_key + "]";
    };
    state_dict_apply(*trunk, mapped, "", /*strict=*/true, path, shown);
}

void trunk_save_torchvision(torch::nn::Sequential& trunk, const std::string& path) {
    NamedTensors out;
    for (auto& [key, tensor] : state_dict_of(*trunk)) {
        const std::string name = torchvision_key_from_trunk(key);
        if (name != key) out.emplace_back(name, tensor);  // pooling/flatten hold nothing to map
    }
    torch_file_write(path, out);
}

}  // namespace ips
