// `--nproc-per-node K` on one machine: this process becomes the launcher of K workers, each the
// same command line without that option, with the torchrun environment set (RANK = LOCAL_RANK,
// WORLD_SIZE = LOCAL_WORLD_SIZE = K, MASTER_ADDR 127.0.0.1, MASTER_PORT a free port unless set).
// Like torchrun, the launcher stops the others when one worker fails, and says which.
#pragma once

#include <string>
#include <vector>

namespace ips {

// The command line with every "--nproc-per-node K" / "--nproc-per-node=K" removed.
std::vector<std::string> args_without_launch(const std::vector<std::string>& args);

// Runs `worker_args` (argv, [0] the program name; the running executable is started) as ranks
// 0..nproc-1 and waits for them. SIGINT and SIGTERM are passed on to the workers, and then
// the launcher waits for all of them (training saves a checkpoint first). Returns 0 when
// every worker succeeded; otherwise the first failing worker's exit status (128 + signal for one
// that was killed), after the others were sent SIGTERM (SIGKILL 10 s later).
int workers_launch(int nproc, const std::vector<std::string>& worker_args);

}  // namespace ips
