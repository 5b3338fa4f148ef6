// The options that make a command a job over several processes, shared by train, tiles, features
// and predict.
#include <cstdlib>

#include "command.h"
#include "ips/launch.h"

namespace ips::cli {

void dist_args_add(CLI::App* sub, DistArgs& a) {
    sub->add_option("--nproc-per-node", a.nproc_per_node,
                    "start this many worker processes on this machine (ranks on loopback, as torchrun does)")
        ->check(CLI::Range(1, 4096));
    sub->add_option("--dist-backend", a.backend, "auto | gloo | nccl (auto: NCCL for CUDA devices, Gloo otherwise)")
        ->check(CLI::IsMember({"auto", "gloo", "nccl"}));
    sub->add_option("--dist-timeout", a.timeout_s,
                    "seconds to wait for the other ranks, at the start and in every collective (default 300)")
        ->check(CLI::PositiveNumber);
}

void dist_args_launch(const DistArgs& a) {
    const char* rank = std::getenv("RANK");
    if (a.nproc_per_node < 1 || (rank && *rank)) return;
    throw WorkersEnded{workers_launch(a.nproc_per_node, args_without_launch(process_args()))};
}

DistGroupPtr dist_args_join(const DistArgs& a, const torch::Device& device, const std::string& fingerprint) {
    DistOptions opt;
    opt.backend = dist_backend_parse(a.backend);
    opt.timeout = std::chrono::milliseconds(static_cast<int64_t>(a.timeout_s * 1000));
    opt.fingerprint = fingerprint;
    return dist_init(dist_env_read(), opt, device);
}

}  // namespace ips::cli
