// Data-parallel runs on torch.distributed's C++ core, c10d: a TCPStore for the rendezvous and a
// process group (Gloo for CPUs, NCCL for CUDA devices) for the collectives. Processes are started
// the way torchrun starts them (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR,
// MASTER_PORT) or by `--nproc-per-node K` (launch.h). libtorch has no C++ DDP, so the pieces DDP
// is made of are here: parameter broadcast, bucketed gradient all-reduce, and the shares of an
// epoch each rank takes. docs/DISTRIBUTED.md describes what is communicated when.
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace ips {

// This process's place in the job, from the torchrun environment.
struct DistEnv {
    int rank = 0;
    int world_size = 1;
    int local_rank = 0;
    int local_world_size = 1;
    std::string master_addr = "127.0.0.1";
    int master_port = 29500;
    bool launched = false;  // RANK and WORLD_SIZE were set: join a process group even at world size 1
    // torchrun's agent already serves the store at MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE):
    // rank 0 joins it as a client instead of serving its own.
    bool agent_store = false;
    std::string run_tag = "0";  // keys of this attempt (TORCHELASTIC_RESTART_COUNT): restarts never read old ones
};

// Reads the torchrun variables. Without RANK and WORLD_SIZE: one process, not launched. Throws
// naming the variable for a malformed value or a rank outside the world.
DistEnv dist_env_read();

enum class DistBackend { automatic, gloo, nccl };
// "auto" | "gloo" | "nccl"; throws naming the value otherwise.
DistBackend dist_backend_parse(const std::string& name);
// Whether this build has the backend (Gloo needs the gloo headers, NCCL a CUDA libtorch).
bool dist_backend_built(DistBackend backend);

struct DistOptions {
    DistBackend backend = DistBackend::automatic;  // automatic: NCCL for CUDA devices, Gloo otherwise
    std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // rendezvous and every collective
    std::string fingerprint;  // must be equal on every rank (the resolved config), checked at join
};

// The store and the process group of a job. Opaque: its users call the dist_* functions.
struct DistGroup;
using DistGroupPtr = std::shared_ptr<DistGroup>;

// Joins the job: rank 0 serves the TCPStore at MASTER_ADDR:MASTER_PORT, every rank announces its
// world size and fingerprint there, and the process group is built once all have joined. Returns
// null when the environment does not launch a job. Errors, each within opt.timeout: the port in
// use, ranks that never joined (named), world sizes or fingerprints that disagree with rank 0's.
DistGroupPtr dist_init(const DistEnv& env, const DistOptions& opt, const torch::Device& device);

int dist_rank(const DistGroup& g);
int dist_world_size(const DistGroup& g);
// Wall seconds spent in collectives so far (the communication share of a step).
double dist_comm_seconds(const DistGroup& g);

// Collectives. Every rank calls them in the same order. A failure (a rank that stopped, a
// timeout) throws a message that names the rank that stopped where the store can tell.
void dist_allreduce_sum(DistGroup& g, torch::Tensor& t);             // in place, any shape
void dist_broadcast(DistGroup& g, std::vector<torch::Tensor>& tensors);  // from rank 0, in place
// Every rank's `t` (the same shape on all), in rank order.
std::vector<torch::Tensor> dist_allgather(DistGroup& g, const torch::Tensor& t);
void dist_barrier(DistGroup& g);
// Rank 0's `bytes` on every rank, through the store (files such as a checkpoint to resume from).
std::string dist_bytes_broadcast(DistGroup& g, const std::string& key, const std::string& bytes);
// Tells the other ranks why this one is stopping, so that their errors name it. Never throws.
void dist_error_report(DistGroup& g, const std::string& message);

// A contiguous part of n items: earlier ranks take one more when n does not divide evenly, so a
// rank's share is empty only when n < world.
struct Share {
    int64_t begin = 0;
    int64_t count = 0;
};
Share share_of(int64_t n, int rank, int world);

// Copies rank 0's parameters (unless `parameters` is false) and buffers to every rank: one flat
// broadcast per dtype and device.
void module_broadcast(DistGroup& g, torch::nn::Module& module, bool parameters = true);

// Sums the gradients of `params` over the ranks, in buckets of about bucket_bytes in reverse
// parameter order (the order backward finishes them). `extra` (e.g. the weighted loss) rides in
// the last bucket; returns its sum over the ranks. Parameters without a gradient on this rank are
// left without one (the same graph on every rank leaves the same ones out).
double gradients_allreduce(DistGroup& g, const std::vector<torch::Tensor>& params, double extra,
                           int64_t bucket_bytes = int64_t{25} << 20);
// The same with one all-reduce per parameter: the baseline the buckets are measured against.
double gradients_allreduce_per_tensor(DistGroup& g, const std::vector<torch::Tensor>& params, double extra);

}  // namespace ips
