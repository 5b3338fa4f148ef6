#include "ips/inputs.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <stdexcept>

namespace ips {

void inputs_for_each(const char* command, const char* noun, const std::vector<std::string>& paths,
                     const std::function<void(const std::string&)>& one) {
    std::vector<std::string> failed;
    for (const auto& path : paths) {
        try {
            one(path);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "ips %s: skipped %s: %s\n", command, path.c_str(), e.what());
            failed.push_back(path);
        }
    }
    if (failed.empty()) return;
    std::string list;
    for (const auto& f : failed) list += "\n  " + f;
    throw std::runtime_error(std::to_string(failed.size()) + " of " + std::to_string(paths.size()) +
                             " " + noun + " failed:" + list);
}

void inputs_stems_distinct(const std::vector<std::string>& paths) {
    std::map<std::string, std::string> seen;
    for (const auto& p : paths) {
        auto [it, fresh] = seen.emplace(std::filesystem::path(p).stem().string(), p);
        if (!fresh)
            throw std::runtime_error("'" + it->second + "' and '" + p + "' would write the same output files (" +
                                     it->first + ".*); rename one or run them separately");
    }
}

}  // namespace ips
