#include "ips/train.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "ips/batchnorm.h"
#include "ips/checkpoint.h"
#include "ips/fault.h"
#include "ips/files.h"
#include "ips/interrupt.h"
#include "ips/metrics.h"
#include "ips/progress.h"
#include "ips/step.h"

namespace ips {
namespace fs = std::filesystem;

namespace {

std::string loss_text(double loss) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "loss %.4f", loss);
    return buf;
}

std::vector<int64_t> identity_order(int64_t n) {
    std::vector<int64_t> order(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    return order;
}

}  // namespace

namespace {

nlohmann::json metrics_line(const std::vector<Task>& tasks, int epoch, double train_loss, const EvalResult& test,
                            double lr, double seconds, const DistGroup* dist, double comm_seconds) {
    nlohmann::json j;
    j["epoch"] = epoch;
    j["train_loss"] = train_loss;
    j["test_loss"] = test.loss;
    j["lr"] = lr;
    j["seconds"] = seconds;
    if (dist) {
        j["world_size"] = dist_world_size(*dist);
        j["comm_seconds"] = comm_seconds;  // this epoch's time in collectives on rank 0
    }
    for (size_t t = 0; t < tasks.size() && t < test.task_metric.size(); ++t) {
        const double m = test.task_metric[t];
        j["test"][tasks[t].name] = {{"loss", test.task_loss[t]},
                                    {metric_name(tasks[t].metric), std::isnan(m) ? nlohmann::json() : nlohmann::json(m)}};
    }
    return j;
}

// How far an epoch has come: batches done, and the sums its mean training loss comes from.
struct EpochProgress {
    int64_t batches = 0;
    double loss_sum = 0;   // loss times batch size, over the batches that counted
    int64_t examples = 0;  // examples in those batches
    int64_t skipped = 0;   // batches skipped for a non-finite loss (nonfinite_loss: skip)
    double mean() const { return examples > 0 ? loss_sum / static_cast<double>(examples) : std::nan(""); }
};

// Everything a run carries from epoch to epoch.
struct Run {
    Run(const Config& c, const RunOptions& o) : cfg(c), opt(o), dir(o.out_dir), dist(o.dist.get()) {}
    const Config& cfg;
    const RunOptions& opt;
    fs::path dir;
    DistGroup* dist;  // null: one process
    std::string config_yaml;
    DatasetPtr train_data, test_data;
    IPSNet net{nullptr};
    std::unique_ptr<torch::optim::AdamW> optimizer;
    BatchNormSyncPtr bn_sync;
    StepCounter counter;
    bool resume = false;  // --resume and a last.pt to resume from
    int start_epoch = 0;
    EpochProgress resumed_at;  // a checkpoint from inside start_epoch: how far that epoch had come
    double eval_seconds = -1;  // the last test pass's time, for the run's ETA (-1: none yet)
    double best = -1;
    int rank() const { return dist ? dist_rank(*dist) : 0; }
    int world() const { return dist ? dist_world_size(*dist) : 1; }
    bool writes() const { return rank() == 0; }  // rank 0 alone writes files and draws progress
};

// Cuts metrics.jsonl back to the lines of epochs 1..epochs (what the checkpoint resumed from has
// seen): a run killed after writing an epoch's line but before its checkpoint redoes that epoch,
// and a line cut by the kill is dropped.
void metrics_truncate(const fs::path& path, int64_t epochs) {
    if (!fs::exists(path)) return;
    std::ifstream in(path);
    std::string kept, line;
    bool changed = false;
    while (std::getline(in, line)) {
        const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (in.eof() || j.is_discarded() || !j.contains("epoch") || !j["epoch"].is_number_integer() ||
            j["epoch"].get<int64_t>() > epochs) {
            changed = true;
            continue;
        }
        kept += line + "\n";
    }
    if (changed) text_write_atomic(path.string(), kept);
}

// Loads last.pt into the net and optimizer. In a job rank 0 reads the file and hands its bytes to
// the others through the store, so only rank 0 needs to see the run folder.
CheckpointMeta resume_load(Run& run) {
    const fs::path last = run.dir / "last.pt";
    if (!run.dist) return checkpoint_load(last.string(), run.net, run.optimizer.get());
    std::string bytes;
    if (run.writes()) bytes = file_read(last.string());
    bytes = dist_bytes_broadcast(*run.dist, "resume", bytes);
    if (run.writes()) return checkpoint_load(last.string(), run.net, run.optimizer.get());
    const fs::path copy = fs::temp_directory_path() / ("ips-resume-rank" + std::to_string(run.rank()) + ".pt");
    text_write_atomic(copy.string(), bytes);
    CheckpointMeta meta = checkpoint_load(copy.string(), run.net, run.optimizer.get());
    fs::remove(copy);
    return meta;
}

// Whether OUT/last.pt exists (rank 0 looks, and tells the others).
bool checkpoint_present(Run& run) {
    const bool here = run.writes() && fs::exists(run.dir / "last.pt");
    if (!run.dist) return here;
    return dist_bytes_broadcast(*run.dist, "resume-present", here ? "1" : "0") == "1";
}

void run_open(Run& run) {
    const Config& cfg = run.cfg;
    if (cfg.train.B % run.world() != 0)
        throw std::runtime_error("B=" + std::to_string(cfg.train.B) + " does not divide by the world size " +
                                 std::to_string(run.world()) + ": the global batch is split evenly over the ranks");
    run.config_yaml = config_to_yaml(cfg);
    run.train_data = dataset_open(cfg, "train");
    run.test_data = dataset_open(cfg, "test");
    if (run.train_data->size() == 0)
        throw std::runtime_error("the training split of '" + cfg.data.dataset + "' is empty");
    // A job scheduler restarts a killed job with the same command line, --resume included, even
    // when it died before the first checkpoint: that run starts from the beginning.
    run.resume = run.opt.resume && checkpoint_present(run);
    if (run.opt.resume && !run.resume && run.writes())
        std::fprintf(stderr, "note: --resume: %s does not exist yet; starting from the beginning\n",
                     (run.dir / "last.pt").c_str());
    run.net = net_make(cfg.model, cfg.compute, cfg.seed);
    // A resumed run's last.pt holds everything the initial weights became.
    if (run.resume) {
        // Loaded from last.pt below, after the move to the device (with the optimizer state).
    } else if (!run.opt.init_weights.empty()) {
        weights_load(run.opt.init_weights, run.net);
    } else {
        if (cfg.model.zero_keys) attention_keys_zero(run.net);
        initial_weights_apply(run.net);
    }
    net_to(run.net, run.opt.device);
    run.optimizer = optimizer_make(run.net, cfg.train);
    // A partial last batch is trained on.
    run.counter.steps_per_epoch = (run.train_data->size() + cfg.train.B - 1) / cfg.train.B;
    // The run folder is made only now, with the data and the starting weights opened: a bad input
    // fails with nothing written.
    if (run.writes()) {
        fs::create_directories(run.dir);
        // What a run killed mid-write left behind (the files under their final names are whole).
        stale_temporaries_remove(run.dir.string());
        // A resumed run usually finds its own config there: no write, so no failure on a full disk.
        const fs::path config = run.dir / "config.yaml";
        if (!fs::exists(config) || file_read(config.string()) != run.config_yaml)
            text_write_atomic(config.string(), run.config_yaml);
    }
    if (run.resume) {
        CheckpointMeta meta = resume_load(run);
        run.start_epoch = static_cast<int>(meta.epoch);
        run.resumed_at = {meta.epoch_batches, meta.epoch_loss_sum, meta.epoch_examples, meta.epoch_skipped};
        run.counter.step = meta.step;
        run.best = meta.best_score;
        if (meta.epoch_batches > run.counter.steps_per_epoch)
            throw std::runtime_error("checkpoint '" + (run.dir / "last.pt").string() + "' is " +
                                     std::to_string(meta.epoch_batches) + " batches into an epoch of " +
                                     std::to_string(run.counter.steps_per_epoch) + ": it is not from this config");
        if (run.writes()) {
            metrics_truncate(run.dir / "metrics.jsonl", run.start_epoch);
            if (meta.epoch_batches > 0)
                std::fprintf(stderr, "resuming from %s in epoch %d after batch %lld of %lld (step %lld)\n",
                             (run.dir / "last.pt").c_str(), run.start_epoch + 1, static_cast<long long>(meta.epoch_batches),
                             static_cast<long long>(run.counter.steps_per_epoch), static_cast<long long>(run.counter.step));
            else
                std::fprintf(stderr, "resuming from %s after epoch %d (step %lld)\n", (run.dir / "last.pt").c_str(),
                             run.start_epoch, static_cast<long long>(run.counter.step));
        }
    } else if (run.writes()) {
        text_write_atomic((run.dir / "metrics.jsonl").string(), "");
    }
    if (run.dist) {
        module_broadcast(*run.dist, *run.net);
        if (cfg.train.sync_bn) {
            run.bn_sync = std::make_shared<BatchNormSync>();
            run.bn_sync->group = run.dist;
            module_batchnorm_sync(*run.net, run.bn_sync);
        }
    }
}

// "the last good checkpoint is OUT/last.pt (epoch 3)", or that there is none yet: for messages of a
// run that stops on an error (rank 0 looks; another rank names the file).
std::string last_good_checkpoint(const Run& run) {
    const fs::path last = run.dir / "last.pt";
    if (run.writes() && !fs::exists(last)) return "no checkpoint was written yet";
    std::string where;
    if (run.writes()) {
        try {
            const CheckpointMeta meta = checkpoint_meta(last.string());
            where = " (epoch " + std::to_string(meta.epoch) +
                    (meta.epoch_batches > 0 ? ", batch " + std::to_string(meta.epoch_batches) + " of epoch " +
                                                  std::to_string(meta.epoch + 1)
                                            : "") +
                    ")";
        } catch (const std::exception&) {
            where = " (unreadable)";
        }
    }
    return "the last good checkpoint is " + last.string() + where;
}

// The seed of batch `batch` of `epoch` on `rank`: every random draw of a step (selection shuffles,
// dropout) starts from it, so a run resumed after any batch replays the rest exactly.
uint64_t batch_seed(int64_t seed, int epoch, int64_t batch, int rank) {
    uint64_t h = static_cast<uint64_t>(seed) * 1000003ULL + static_cast<uint64_t>(epoch);
    h = h * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(batch) + 1;
    return h ^ (0xD1B54A32D192ED03ULL * static_cast<uint64_t>(rank));
}

// Whether every rank has been asked to stop (one of them got SIGTERM or SIGINT). In a job the ranks
// agree through a one-number all-reduce, so that all of them stop after the same step.
bool stop_requested(Run& run) {
    const bool here = interrupt_pending() != 0;
    if (!run.dist) return here;
    auto flag = torch::full({1}, here ? 1.0 : 0.0, torch::kFloat64);
    dist_allreduce_sum(*run.dist, flag);
    return flag.item<double>() > 0;
}

// Saves last.pt inside epoch `epoch` where `done` says and ends the run with Interrupted.
[[noreturn]] void interrupted_stop(Run& run, int epoch, const EpochProgress& done) {
    const int sig = interrupt_pending();
    const fs::path last = run.dir / "last.pt";
    if (run.writes()) {
        const CheckpointMeta meta{epoch,         run.counter.step, run.best,      run.config_yaml,
                                  done.batches,  done.loss_sum,    done.examples, done.skipped};
        checkpoint_save(last.string(), run.net, run.optimizer.get(), meta);
    }
    // Rank 0 serves the store: the others leave before it.
    if (run.dist) dist_barrier(*run.dist);
    const std::string name = sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "a stop request";
    throw Interrupted(sig ? sig : SIGTERM,
                      "stopped by " + name + " in epoch " + std::to_string(epoch + 1) + " after batch " +
                          std::to_string(done.batches) + " of " + std::to_string(run.counter.steps_per_epoch) +
                          " (step " + std::to_string(run.counter.step) + "); " + last.string() +
                          " holds it: the same command with --resume continues exactly there");
}

// The ETA of the whole run, shown after the epoch's: the epochs after this one at the training
// rate seen so far, plus the test passes (timed once one has run).
void run_eta_set(Run& run, Progress& bar, int epoch) {
    const int later = run.cfg.train.n_epoch - epoch - 1;
    const double n_test = static_cast<double>(run.test_data->size());
    bar.after_units = static_cast<double>(later) * static_cast<double>(run.train_data->size());
    // Before the first test pass is timed, count a test image as half a training image (no backward).
    if (run.eval_seconds >= 0) bar.after_seconds = (later + 1) * run.eval_seconds;
    else bar.after_units += (later + 1) * n_test * 0.5;
}

// One pass over the training split in an order drawn from (seed, epoch), from where `done` says
// on. In a job every rank draws the same order and takes its share of each global batch.
EpochProgress train_epoch(Run& run, int epoch, EpochProgress done) {
    const Config& cfg = run.cfg;
    std::mt19937_64 order_rng(static_cast<uint64_t>(cfg.seed) * 1000003ULL + static_cast<uint64_t>(epoch));
    const int64_t n = run.train_data->size();
    auto order = identity_order(n);
    std::shuffle(order.begin(), order.end(), order_rng);
    const bool bar_on = run.opt.progress && run.writes();
    Progress bar("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(cfg.train.n_epoch), n, "img");
    run_eta_set(run, bar, epoch);
    bar.skip(std::min(n, done.batches * cfg.train.B));
    for (int64_t b = done.batches; b * cfg.train.B < n; ++b) {
        const int64_t start = b * cfg.train.B;
        const int64_t batch_n = std::min<int64_t>(cfg.train.B, n - start);
        const Share mine = share_of(batch_n, run.rank(), run.world());
        StepShare share{run.dist, static_cast<double>(mine.count) / static_cast<double>(batch_n)};
        // A rank with no example in the epoch's last batch still joins the step's collectives: it
        // runs the batch's first example with weight 0, adding nothing to gradients or statistics.
        const bool stand_in = mine.count == 0;
        const auto examples = dataset_examples(*run.train_data, order, start + (stand_in ? 0 : mine.begin),
                                           stand_in ? 1 : mine.count);
        if (run.bn_sync) run.bn_sync->contributes = !stand_in;
        const uint64_t seed = batch_seed(cfg.seed, epoch, b, run.rank());
        std::mt19937_64 rng(seed);
        torch::manual_seed(seed);
        double loss = 0;
        try {
            loss = train_step(run.net, *run.optimizer, cfg, examples, run.opt.device, rng, run.counter, share);
        } catch (const NonFiniteLoss& e) {
            throw std::runtime_error(std::string(e.what()) + " in epoch " + std::to_string(epoch + 1) +
                                     "; nothing of this batch was applied; " + last_good_checkpoint(run) +
                                     " (try a lower 'lr', or set 'nonfinite_loss: skip' to skip such batches)");
        }
        if (run.bn_sync) run.bn_sync->contributes = true;
        ++done.batches;
        if (std::isfinite(loss)) {
            done.loss_sum += loss * static_cast<double>(batch_n);
            done.examples += batch_n;
        } else {
            ++done.skipped;
            if (run.writes())
                std::fprintf(stderr, "%swarning: non-finite training loss at step %lld (epoch %d, batch %lld): skipped\n",
                             bar_on && bar.tty ? "\n" : "", static_cast<long long>(run.counter.step), epoch + 1,
                             static_cast<long long>(b + 1));
        }
        fault_point("train-step");
        if (bar_on) bar.update(batch_n, loss_text(loss));
        if (stop_requested(run)) {
            if (bar_on) bar.finish(loss_text(loss));
            interrupted_stop(run, epoch, done);
        }
    }
    if (bar_on) bar.finish(loss_text(done.mean()));
    return done;
}

// Metrics line, best.pt when the test score improved, last.pt always (with the optimizer). The
// line goes first: a run killed between the two redoes the epoch and rewrites the line (resume
// cuts metrics.jsonl back to the checkpoint's epochs).
void epoch_close(Run& run, int epoch, double train_loss, int64_t skipped, const EvalResult& test, double seconds,
                 double comm_seconds) {
    const double lr = lr_at(run.cfg.train, run.counter.step - 1, run.counter.steps_per_epoch);
    const CheckpointMeta meta{epoch + 1, run.counter.step, std::max(run.best, test.score()), run.config_yaml};
    const bool improved = test.n > 0 && test.score() > run.best;
    if (improved) run.best = test.score();
    if (!run.writes()) return;
    nlohmann::json line =
        metrics_line(run.cfg.model.tasks, epoch + 1, train_loss, test, lr, seconds, run.dist, comm_seconds);
    if (run.cfg.train.nonfinite_loss == NonFinite::skip) line["skipped_batches"] = skipped;
    const std::string text = line.dump();
    try {
        text_append((run.dir / "metrics.jsonl").string(), text + "\n");
        std::fprintf(stderr, "%s\n", text.c_str());
        fault_point("epoch-end");
        if (improved) checkpoint_save((run.dir / "best.pt").string(), run.net, nullptr, meta);
        checkpoint_save((run.dir / "last.pt").string(), run.net, run.optimizer.get(), meta);
    } catch (const std::exception& e) {
        throw std::runtime_error(std::string(e.what()) + "; stopped after epoch " + std::to_string(epoch + 1) + "; " +
                                 last_good_checkpoint(run));
    }
}

std::vector<EpochRecord> epochs_run(Run& run) {
    const Config& cfg = run.cfg;
    const RunOptions& opt = run.opt;
    std::vector<EpochRecord> records;
    for (int epoch = run.start_epoch; epoch < cfg.train.n_epoch; ++epoch) {
        const auto t0 = std::chrono::steady_clock::now();
        const double comm0 = run.dist ? dist_comm_seconds(*run.dist) : 0;
        const EpochProgress done = train_epoch(run, epoch, epoch == run.start_epoch ? run.resumed_at : EpochProgress{});
        const double train_loss = done.mean();
        // One process stops a test pass at once; ranks of a job would have to agree mid-pass, so
        // they finish it and stop after the epoch's checkpoint instead.
        const auto t_eval = std::chrono::steady_clock::now();
        EvalResult test;
        try {
            test = evaluate(run.net, cfg, *run.test_data, opt.device, opt.progress && run.writes(), run.dist,
                            run.dist ? std::function<bool()>() : [] { return interrupt_pending() != 0; });
        } catch (const EvalStopped&) {
            interrupted_stop(run, epoch, done);
        }
        const auto t1 = std::chrono::steady_clock::now();
        run.eval_seconds = std::chrono::duration<double>(t1 - t_eval).count();
        const double seconds = std::chrono::duration<double>(t1 - t0).count();
        const double comm = run.dist ? dist_comm_seconds(*run.dist) - comm0 : 0;
        epoch_close(run, epoch, train_loss, done.skipped, test, seconds, comm);
        records.push_back({epoch + 1, train_loss, test});
        if (opt.on_epoch) opt.on_epoch(records.back());
        // A signal during the last epoch's test pass or checkpoint: the run is complete, not stopped.
        if (epoch + 1 < cfg.train.n_epoch && stop_requested(run)) {
            const int sig = interrupt_pending();
            throw Interrupted(sig ? sig : SIGTERM, "stopped after epoch " + std::to_string(epoch + 1) + "; " +
                                                       (run.dir / "last.pt").string() +
                                                       " holds it: the same command with --resume continues there");
        }
        if (opt.stop_after_epoch > 0 && epoch + 1 >= opt.stop_after_epoch) break;
    }
    return records;
}

}  // namespace

std::vector<EpochRecord> train_run(const Config& cfg, const RunOptions& opt) {
    Run run(cfg, opt);
    // SIGTERM and SIGINT stop the run after the current step, with a checkpoint to resume from.
    struct Watch {
        Watch() { interrupt_watch(); }
        ~Watch() { interrupt_unwatch(); }
    } watch;
    try {
        run_open(run);
        auto records = epochs_run(run);
        // Rank 0 serves the store: it leaves last, once every rank has finished.
        if (run.dist) dist_barrier(*run.dist);
        return records;
    } catch (const Interrupted&) {
        throw;
    } catch (const std::exception& e) {
        if (run.dist) dist_error_report(*run.dist, e.what());
        throw;
    }
}

}  // namespace ips
