#include "ips/distributed.h"

// c10d guards each backend's header with the macro of its build option; the headers are there
// when the backend's own headers are (gloo: libgloo-dev; NCCL: a CUDA libtorch and nccl.h).
#if __has_include(<gloo/algorithm.h>)
#define USE_C10D_GLOO 1
#define IPS_HAVE_GLOO 1
#endif
#if __has_include(<nccl.h>) && __has_include(<cuda_runtime_api.h>)
#define USE_C10D_NCCL 1
#define IPS_HAVE_NCCL 1
#endif

#define IPS_COMPAT_C10D 1
#include "ips/torch_compat.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef IPS_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef IPS_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <thread>

namespace ips {

struct DistGroup {
    int rank = 0;
    int world = 1;
    std::string where;  // MASTER_ADDR:MASTER_PORT, for messages
    std::chrono::milliseconds timeout{0};
    c10::intrusive_ptr<c10d::Store> store;
    c10::intrusive_ptr<compat::CommBackend> pg;
    double comm_seconds = 0;
    // A counter per rank in the store, bumped every second by a thread with its own connection:
    // when a collective fails, the ranks whose counter stopped are the ones that died.
    std::thread beat;
    std::atomic<bool> beat_stop{false};
    ~DistGroup() {
        beat_stop = true;
        if (beat.joinable()) beat.join();
    }
};

namespace {

using Clock = std::chrono::steady_clock;
const std::string kPrefix = "/";

std::string error_text(const std::exception& e) {
    // c10::Error's what() carries a C++ backtrace; users need the first line.
    const auto* c10e = dynamic_cast<const c10::Error*>(&e);
    std::string s = c10e ? c10e->what_without_backtrace() : e.what();
    const auto nl = s.find('\n');
    return nl == std::string::npos ? s : s.substr(0, nl);
}

std::vector<uint8_t> bytes_of(const std::string& s) { return {s.begin(), s.end()}; }
std::string string_of(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

int env_int(const char* name, int fallback, bool* present = nullptr) {
    const char* v = std::getenv(name);
    if (present) *present = v && *v;
    if (!v || !*v) return fallback;
    char* end = nullptr;
    errno = 0;
    const long x = std::strtol(v, &end, 10);
    if (errno || *end || x < 0 || x > 1000000)
        throw std::runtime_error(std::string("environment variable ") + name + "='" + v +
                                 "' is not a non-negative integer");
    return static_cast<int>(x);
}

// Our keys live under "ips/<attempt>/" of the store (shared with torchrun's agent when it serves it).
c10::intrusive_ptr<c10d::Store> store_connect(const DistEnv& env, bool server, std::chrono::milliseconds timeout) {
    c10d::TCPStoreOptions o;
    o.port = static_cast<uint16_t>(env.master_port);
    o.isServer = server;
    o.waitWorkers = false;  // the join below waits, and can name who is missing
    o.timeout = timeout;
    compat::tcp_store_classic(o);
    auto tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
    return c10::make_intrusive<c10d::PrefixStore>("ips/" + env.run_tag, tcp);
}

std::string rank_list(const std::vector<int>& ranks) {
    std::string s;
    for (int r : ranks) s += (s.empty() ? "" : ", ") + std::to_string(r);
    return s;
}

// What the store can tell about the other ranks after a collective failed: the reasons stopped
// ranks left there, else the ranks whose heartbeat stopped.
std::string peers_diagnose(DistGroup& g) {
    try {
        g.store->setTimeout(std::chrono::seconds(5));
        for (int r = 0; r < g.world; ++r) {
            const std::string key = kPrefix + "error/" + std::to_string(r);
            if (r != g.rank && g.store->check({key})) return "rank " + std::to_string(r) + " stopped: " + string_of(g.store->get(key));
        }
        std::vector<int64_t> before(static_cast<size_t>(g.world));
        for (int r = 0; r < g.world; ++r) before[static_cast<size_t>(r)] = g.store->add(kPrefix + "beat/" + std::to_string(r), 0);
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));
        std::vector<int> dead;
        for (int r = 0; r < g.world; ++r)
            if (r != g.rank && g.store->add(kPrefix + "beat/" + std::to_string(r), 0) == before[static_cast<size_t>(r)]) dead.push_back(r);
        if (!dead.empty()) return "rank " + rank_list(dead) + (dead.size() > 1 ? " have" : " has") + " stopped";
        return "every rank is still alive: a timeout (raise --dist-timeout for slow steps)";
    } catch (const std::exception&) {
        return "rank 0, which serves the store at " + g.where + ", has stopped";
    }
}

// Runs `run` (which launches collectives on the group and waits for them), counts its time, and
// turns a failure into a message naming the rank that stopped where the store can tell.
template <class Run>
void collective(DistGroup& g, const char* what, Run&& run) {
    const auto t0 = Clock::now();
    try {
        run(*g.pg);
    } catch (const std::exception& e) {
        const std::string reason = peers_diagnose(g);
        throw std::runtime_error("rank " + std::to_string(g.rank) + " of " + std::to_string(g.world) + ": " + what +
                                 " failed (" + error_text(e) + "); " + reason);
    }
    g.comm_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
}

void heartbeat_start(DistGroup& g, const DistEnv& env) {
    auto client = store_connect(env, false, g.timeout);
    const std::string key = kPrefix + "beat/" + std::to_string(g.rank);
    client->add(key, 1);
    g.beat = std::thread([&g, client, key] {
        try {
            while (!g.beat_stop) {
                for (int i = 0; i < 10 && !g.beat_stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
                client->add(key, 1);
            }
        } catch (const std::exception&) {
            // The store is gone (rank 0 ended): nothing left to tell.
        }
    });
}

// Every rank announces itself; rank 0's world size and fingerprint are the job's. Waits, polling,
// until all have joined, one reports an error, or the timeout passes.
void join(DistGroup& g, const DistEnv& env, const DistOptions& opt) {
    auto& store = *g.store;
    const std::string me = std::to_string(g.rank);
    const auto fail = [&](const std::string& message) {
        dist_error_report(g, message);
        throw std::runtime_error(message);
    };
    store.set(kPrefix + "world/" + me, bytes_of(std::to_string(env.world_size)));
    store.set(kPrefix + "fingerprint/" + me, bytes_of(opt.fingerprint));
    if (g.rank != 0) {
        try {
            store.wait({kPrefix + "world/0"}, opt.timeout);
        } catch (const std::exception& e) {
            throw std::runtime_error("rank " + me + ": rank 0 did not announce itself at " + g.where + " within " +
                                     std::to_string(opt.timeout.count() / 1000) + " s (" + error_text(e) + ")");
        }
        const int world0 = std::stoi(string_of(store.get(kPrefix + "world/0")));
        if (world0 != env.world_size)
            fail("WORLD_SIZE is " + std::to_string(env.world_size) + " on rank " + me + " but " + std::to_string(world0) +
                 " on rank 0: start every rank with the same WORLD_SIZE");
        if (string_of(store.get(kPrefix + "fingerprint/0")) != opt.fingerprint)
            fail("rank " + me + " runs a different configuration from rank 0 (the resolved configs differ): start every rank with the same config and options");
    }
    store.set(kPrefix + "joined/" + me, bytes_of("1"));
    const auto deadline = Clock::now() + opt.timeout;
    for (;;) {
        std::vector<int> missing;
        for (int r = 0; r < g.world; ++r) {
            if (store.check({kPrefix + "error/" + std::to_string(r)}))
                throw std::runtime_error("rank " + std::to_string(r) + " stopped while joining: " +
                                         string_of(store.get(kPrefix + "error/" + std::to_string(r))));
            if (!store.check({kPrefix + "joined/" + std::to_string(r)})) missing.push_back(r);
        }
        if (missing.empty()) return;
        if (Clock::now() > deadline)
            throw std::runtime_error("rank " + rank_list(missing) + " of " + std::to_string(g.world) + " never joined at " +
                                     g.where + " within " + std::to_string(opt.timeout.count() / 1000) +
                                     " s (not started, or started with another MASTER_ADDR / MASTER_PORT)");
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
}

c10::intrusive_ptr<compat::CommBackend> group_make(DistBackend backend, const c10::intrusive_ptr<c10d::Store>& store,
                                                   int rank, int world, const std::string& addr,
                                                   std::chrono::milliseconds timeout) {
    auto pg_store = c10::make_intrusive<c10d::PrefixStore>("pg", store);
    if (backend == DistBackend::gloo) {
#ifdef IPS_HAVE_GLOO
        auto o = c10d::ProcessGroupGloo::Options::create(timeout);
        if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
            o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
        else if (addr == "127.0.0.1" || addr == "localhost")
            o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
        else
            o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
        return c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, rank, world, o);
#endif
    } else {
#ifdef IPS_HAVE_NCCL
        auto o = c10d::ProcessGroupNCCL::Options::create();
        o->timeout = timeout;
        return c10::make_intrusive<c10d::ProcessGroupNCCL>(pg_store, rank, world, o);
#endif
    }
    (void)pg_store, (void)rank, (void)world, (void)addr, (void)timeout;
    throw std::runtime_error("unreachable: backend not built");
}

}  // namespace

DistEnv dist_env_read() {
    DistEnv env;
    bool has_rank = false, has_world = false;
    env.rank = env_int("RANK", 0, &has_rank);
    env.world_size = env_int("WORLD_SIZE", 1, &has_world);
    if (has_rank != has_world)
        throw std::runtime_error(std::string("environment: ") + (has_rank ? "RANK" : "WORLD_SIZE") + " is set but " +
                                 (has_rank ? "WORLD_SIZE" : "RANK") + " is not (a launcher sets both)");
    env.launched = has_rank;
    if (env.world_size < 1) throw std::runtime_error("environment variable WORLD_SIZE must be at least 1");
    if (env.rank >= env.world_size)
        throw std::runtime_error("environment variable RANK=" + std::to_string(env.rank) + " is outside WORLD_SIZE=" +
                                 std::to_string(env.world_size));
    env.local_rank = env_int("LOCAL_RANK", env.launched ? env.rank : 0);
    env.local_world_size = env_int("LOCAL_WORLD_SIZE", env.world_size);
    if (env.local_rank >= env.local_world_size)
        throw std::runtime_error("environment variable LOCAL_RANK=" + std::to_string(env.local_rank) +
                                 " is outside LOCAL_WORLD_SIZE=" + std::to_string(env.local_world_size));
    if (const char* a = std::getenv("MASTER_ADDR"); a && *a) env.master_addr = a;
    if (const char* a = std::getenv("TORCHELASTIC_USE_AGENT_STORE")) env.agent_store = std::string(a) == "True";
    if (const char* a = std::getenv("TORCHELASTIC_RESTART_COUNT"); a && *a) env.run_tag = a;
    env.master_port = env_int("MASTER_PORT", env.master_port);
    if (env.master_port < 1 || env.master_port > 65535)
        throw std::runtime_error("environment variable MASTER_PORT=" + std::to_string(env.master_port) + " is not a port");
    return env;
}

DistBackend dist_backend_parse(const std::string& name) {
    if (name == "auto") return DistBackend::automatic;
    if (name == "gloo") return DistBackend::gloo;
    if (name == "nccl") return DistBackend::nccl;
    throw std::runtime_error("--dist-backend must be auto, gloo or nccl, not '" + name + "'");
}

bool dist_backend_built(DistBackend backend) {
#ifdef IPS_HAVE_GLOO
    if (backend == DistBackend::gloo) return true;
#endif
#ifdef IPS_HAVE_NCCL
    if (backend == DistBackend::nccl) return true;
#endif
    return backend == DistBackend::automatic;
}

DistGroupPtr dist_init(const DistEnv& env, const DistOptions& opt, const torch::Device& device) {
    if (!env.launched) return nullptr;
    DistBackend backend = opt.backend;
    if (backend == DistBackend::automatic) backend = device.is_cuda() ? DistBackend::nccl : DistBackend::gloo;
    const char* backend_name = backend == DistBackend::nccl ? "nccl" : "gloo";
    if (!dist_backend_built(backend))
        throw std::runtime_error(std::string("this build of ips has no ") + backend_name + " backend" +
                                 (backend == DistBackend::nccl ? " (it needs a CUDA libtorch and nccl.h)"
                                                               : " (it needs the gloo headers: libgloo-dev)"));
    if (backend == DistBackend::nccl && !device.is_cuda())
        throw std::runtime_error("--dist-backend nccl needs a CUDA device, not " + device.str());
    auto g = std::make_shared<DistGroup>();
    g->rank = env.rank;
    g->world = env.world_size;
    g->where = env.master_addr + ":" + std::to_string(env.master_port);
    g->timeout = opt.timeout;
    try {
        g->store = store_connect(env, env.rank == 0 && !env.agent_store, opt.timeout);
    } catch (const std::exception& e) {
        const std::string why = error_text(e);
        if (env.rank == 0 && (why.find("in use") != std::string::npos || why.find("EADDRINUSE") != std::string::npos))
            throw std::runtime_error("MASTER_PORT " + std::to_string(env.master_port) + " is in use on " +
                                     env.master_addr + " (another job?): choose a free port with MASTER_PORT");
        if (env.rank == 0) throw std::runtime_error("rank 0 could not serve the store at " + g->where + ": " + why);
        throw std::runtime_error("rank " + std::to_string(env.rank) + " could not reach rank 0's store at " + g->where +
                                 " within " + std::to_string(opt.timeout.count() / 1000) +
                                 " s (rank 0 not started, or a wrong MASTER_ADDR / MASTER_PORT): " + why);
    }
    join(*g, env, opt);
    try {
        g->pg = group_make(backend, g->store, g->rank, g->world, env.master_addr, opt.timeout);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string("rank ") + std::to_string(g->rank) + ": the " + backend_name +
                                 " process group could not be formed: " + error_text(e));
    }
    heartbeat_start(*g, env);
    return g;
}

int dist_rank(const DistGroup& g) { return g.rank; }
int dist_world_size(const DistGroup& g) { return g.world; }
double dist_comm_seconds(const DistGroup& g) { return g.comm_seconds; }

void dist_allreduce_sum(DistGroup& g, torch::Tensor& t) {
    std::vector<torch::Tensor> v{t};
    collective(g, "all-reduce", [&](compat::CommBackend& pg) { pg.allreduce(v)->wait(); });
}

void dist_broadcast(DistGroup& g, std::vector<torch::Tensor>& tensors) {
    for (auto& t : tensors) {
        std::vector<torch::Tensor> v{t};
        c10d::BroadcastOptions o;
        o.rootRank = 0;
        collective(g, "broadcast", [&](compat::CommBackend& pg) { pg.broadcast(v, o)->wait(); });
    }
}

std::vector<torch::Tensor> dist_allgather(DistGroup& g, const torch::Tensor& t) {
    std::vector<torch::Tensor> in{t.contiguous()};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < g.world; ++r) out[0].push_back(torch::empty_like(in[0]));
    collective(g, "all-gather", [&](compat::CommBackend& pg) { pg.allgather(out, in)->wait(); });
    return out[0];
}

void dist_barrier(DistGroup& g) {
    collective(g, "barrier", [&](compat::CommBackend& pg) { pg.barrier()->wait(); });
}

std::string dist_bytes_broadcast(DistGroup& g, const std::string& key, const std::string& bytes) {
    const std::string k = kPrefix + "bytes/" + key;
    try {
        if (g.rank == 0) {
            g.store->set(k, bytes_of(bytes));
            dist_barrier(g);
            g.store->deleteKey(k);
            return bytes;
        }
        g.store->setTimeout(g.timeout);
        std::string got = string_of(g.store->get(k));
        // Once everyone has it, rank 0 frees the store's copy (a checkpoint can be hundreds of MB).
        dist_barrier(g);
        return got;
    } catch (const std::exception& e) {
        throw std::runtime_error("rank " + std::to_string(g.rank) + ": receiving '" + key + "' from rank 0 failed (" +
                                 error_text(e) + "); " + peers_diagnose(g));
    }
}

void dist_error_report(DistGroup& g, const std::string& message) {
    try {
        g.store->set(kPrefix + "error/" + std::to_string(g.rank), bytes_of(message));
    } catch (...) {
    }
}

Share share_of(int64_t n, int rank, int world) {
    const int64_t base = n / world, rest = n % world;
    Share s;
    s.begin = rank * base + std::min<int64_t>(rank, rest);
    s.count = base + (rank < rest ? 1 : 0);
    return s;
}

namespace {

// Tensors grouped by (dtype, device), each group flattened into one buffer, reduced or broadcast,
// and copied back.
struct Flat {
    torch::Tensor buffer;
    std::vector<torch::Tensor> parts;
};

Flat flat_of(const std::vector<torch::Tensor>& parts, const torch::Tensor& tail = {}) {
    std::vector<torch::Tensor> views;
    for (const auto& p : parts) views.push_back(p.reshape({-1}));
    if (tail.defined()) views.push_back(tail.reshape({-1}));
    return {torch::cat(views), parts};
}

void flat_unpack(const Flat& f) {
    int64_t at = 0;
    for (const auto& p : f.parts) {
        p.copy_(f.buffer.narrow(0, at, p.numel()).view(p.sizes()));
        at += p.numel();
    }
}

using GroupKey = std::pair<int, std::string>;  // dtype, device
GroupKey key_of(const torch::Tensor& t) { return {static_cast<int>(t.scalar_type()), t.device().str()}; }

}  // namespace

void module_broadcast(DistGroup& g, torch::nn::Module& module, bool parameters) {
    torch::NoGradGuard no_grad;
    std::map<GroupKey, std::vector<torch::Tensor>> groups;
    if (parameters)
        for (const auto& p : module.parameters()) groups[key_of(p)].push_back(p);
    for (const auto& b : module.buffers()) groups[key_of(b)].push_back(b);
    for (auto& [key, tensors] : groups) {
        Flat f = flat_of(tensors);
        std::vector<torch::Tensor> v{f.buffer};
        dist_broadcast(g, v);
        if (g.rank != 0) flat_unpack(f);
    }
}

namespace {

// The gradients of this rank, in reverse parameter order.
std::vector<torch::Tensor> grads_of(const std::vector<torch::Tensor>& params) {
    std::vector<torch::Tensor> grads;
    for (auto it = params.rbegin(); it != params.rend(); ++it)
        if (it->grad().defined()) grads.push_back(it->grad());
    return grads;
}

double extra_read(const torch::Tensor& buffer) { return buffer[-1].item<double>(); }

}  // namespace

double gradients_allreduce(DistGroup& g, const std::vector<torch::Tensor>& params, double extra, int64_t bucket_bytes) {
    const auto grads = grads_of(params);
    // Buckets of consecutive gradients of one dtype and device; the extra value joins the last.
    std::vector<std::vector<torch::Tensor>> buckets(1);
    int64_t bytes = 0;
    for (const auto& gr : grads) {
        const int64_t b = gr.numel() * static_cast<int64_t>(gr.element_size());
        if (!buckets.back().empty() && (bytes + b > bucket_bytes || key_of(gr) != key_of(buckets.back().front()))) {
            buckets.emplace_back();
            bytes = 0;
        }
        buckets.back().push_back(gr);
        bytes += b;
    }
    const auto tail_options = grads.empty() ? torch::TensorOptions().dtype(torch::kFloat64)
                                            : grads.back().options();
    std::vector<Flat> flats;
    collective(g, "gradient all-reduce", [&](compat::CommBackend& pg) {
        std::vector<c10::intrusive_ptr<c10d::Work>> works;
        for (size_t i = 0; i < buckets.size(); ++i) {
            const bool last = i + 1 == buckets.size();
            flats.push_back(flat_of(buckets[i], last ? torch::full({1}, extra, tail_options) : torch::Tensor()));
            std::vector<torch::Tensor> v{flats.back().buffer};
            works.push_back(pg.allreduce(v));  // queued: the buckets travel back to back
        }
        for (auto& w : works) w->wait();
    });
    torch::NoGradGuard no_grad;
    for (const auto& f : flats) flat_unpack(f);
    return extra_read(flats.back().buffer);
}

double gradients_allreduce_per_tensor(DistGroup& g, const std::vector<torch::Tensor>& params, double extra) {
    auto grads = grads_of(params);
    for (auto& gr : grads) dist_allreduce_sum(g, gr);
    auto e = torch::full({1}, extra, torch::kFloat64);
    dist_allreduce_sum(g, e);
    return e.item<double>();
}

}  // namespace ips
