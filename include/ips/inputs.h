// Jobs over many input files (tiles, features, predict): one bad file is reported and skipped, the
// others go on, and the job fails at the end naming the files that failed.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace ips {

// Runs `one` on every path; a failure is reported on stderr as "ips COMMAND: skipped PATH: why"
// and counted. Throws std::runtime_error "K of N <noun> failed:" listing the failed paths.
void inputs_for_each(const char* command, const char* noun, const std::vector<std::string>& paths,
                     const std::function<void(const std::string&)>& one);

// Outputs are named by the file's stem: two inputs with one stem would overwrite each other (or,
// for resumable jobs, the second would be skipped as done). Throws naming both.
void inputs_stems_distinct(const std::vector<std::string>& paths);

}  // namespace ips
