#include "ips/select.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <numeric>

#include "ips/reader_thread.h"

namespace ips {
namespace {

using torch::indexing::Slice;

// Patch order per image [N] int64 (CPU): identity, one permutation shared by the group, or one each.
std::vector<torch::Tensor> order_make(size_t n_images, int64_t N, Shuffle shuffle, std::mt19937_64& rng) {
    std::vector<torch::Tensor> orders;
    std::vector<int64_t> perm(static_cast<size_t>(N));
    for (size_t b = 0; b < n_images; ++b) {
        if (shuffle == Shuffle::none || (shuffle == Shuffle::batch && b > 0)) {
            if (shuffle == Shuffle::none) orders.push_back(torch::arange(N, torch::kLong));
            else orders.push_back(orders.front());
            continue;
        }
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), rng);
        orders.push_back(torch::tensor(perm, torch::kLong));
    }
    return orders;
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// Positions [start, end) of each image's order, read and on the device.
struct Chunk {
    torch::Tensor patches;  // [b * k, ...patch_shape] float32 on the device
    torch::Tensor idx;      // [b, k] grid indices on the device
};

Chunk chunk_read(const std::vector<PatchSource*>& sources, const std::vector<torch::Tensor>& orders,
                 bool identity_order, int64_t start, int64_t end, const torch::Device& device) {
    std::vector<torch::Tensor> patches, idx;
    for (size_t b = 0; b < sources.size(); ++b) {
        auto ids = orders[b].slice(0, start, end);
        // Contiguous runs let file-backed sources read one region instead of scattered patches.
        // Patches travel as stored (uint8, float16) and become float32 on the compute device.
        patches.push_back(identity_order ? source_range_on(*sources[b], start, end - start, device)
                                         : source_read_on(*sources[b], ids, device));
        idx.push_back(ids);
    }
    Chunk c;
    c.patches = patches.size() == 1 ? patches[0] : torch::cat(patches, 0);
    c.idx = torch::stack(idx).to(device, /*non_blocking=*/true);  // no stream sync per chunk
    return c;
}

// The chunks of one selection in order: [0, M), then I at a time. The next chunk is read on the
// reader thread while the caller encodes the current one, so decoding (slides, JPEG tiles) and
// the encoder overlap; memory holds two chunks instead of one.
class ChunkReader {
public:
    ChunkReader(const std::vector<PatchSource*>& sources, const std::vector<torch::Tensor>& orders, bool identity,
                int64_t N, int64_t M, int64_t I, const torch::Device& device)
        : sources_(sources), orders_(orders), identity_(identity), N_(N), M_(M), I_(I), device_(device) {
        ahead(0, M_);
    }
    ~ChunkReader() {
        if (next_.valid()) next_.wait();  // a throwing caller must not leave the thread reading
    }
    // The next chunk [start, end), or false after the last one.
    bool next(Chunk& chunk, int64_t& start, int64_t& end, SelectTimes* times) {
        if (!next_.valid()) return false;
        const auto t0 = Clock::now();
        chunk = next_.get();
        if (times) times->read_wait += seconds_since(t0);
        start = start_;
        end = end_;
        if (end < N_) ahead(end, std::min(end + I_, N_));
        return true;
    }

private:
    void ahead(int64_t start, int64_t end) {
        start_ = start;
        end_ = end;
        next_ = reader_thread_submit<Chunk>(
            [this, start, end] { return chunk_read(sources_, orders_, identity_, start, end, device_); });
    }
    const std::vector<PatchSource*>& sources_;
    const std::vector<torch::Tensor>& orders_;
    bool identity_;
    int64_t N_, M_, I_;
    torch::Device device_;
    int64_t start_ = 0, end_ = 0;
    std::future<Chunk> next_;
};

// Copies the logits [b, H, T, k] of the patches `idx` [b, k] into each image's [N, H, T].
void logits_keep(const torch::Tensor& logits, const torch::Tensor& idx, std::vector<torch::Tensor>& kept) {
    const auto l = logits.permute({0, 3, 1, 2}).to(torch::kCPU, torch::kFloat32);  // [b, k, H, T]
    const auto i = idx.to(torch::kCPU);
    for (size_t b = 0; b < kept.size(); ++b) kept[b].index_copy_(0, i[int64_t(b)], l[int64_t(b)]);
}

// Selection for images with the same N, in lockstep. Writes rows `rows` of the output tensors.
void select_group(IPSNet& net, const std::vector<PatchSource*>& sources, const std::vector<int64_t>& rows,
                  int64_t N, const SelectOptions& opt, Shuffle shuffle, const torch::Device& device,
                  std::mt19937_64& rng, Selection& out, const SelectExtras& extras) {
    const int64_t M = opt.M, b = static_cast<int64_t>(sources.size());
    auto rows_t = torch::tensor(rows, torch::kLong);
    if (M >= N) {  // nothing to select: every patch is used, the rest is padding
        auto idx = torch::full({b, M}, -1, torch::kLong);
        idx.index_put_({Slice(), Slice(0, N)}, torch::arange(N, torch::kLong));
        out.idx.index_put_({rows_t}, idx);
        out.valid.index_put_({rows_t}, idx.ge(0));
        return;
    }
    auto orders = order_make(sources.size(), N, shuffle, rng);
    const bool identity = shuffle == Shuffle::none;
    auto& attn = net->transf->crs_attn;
    SelectTimes* times = extras.timed ? &out.times : nullptr;
    // Encoder (and scoring) time as the device spends it: with `timed`, a sync per chunk.
    auto encode = [&](const Chunk& c, int64_t k) {
        const auto t0 = Clock::now();
        auto emb = net->embed(c.patches).view({b, k, net->D});
        if (times) {
            if (device.is_cuda()) torch::cuda::synchronize(device.index());
            times->encode += seconds_since(t0);
        }
        if (extras.on_patches) extras.on_patches(b * k);
        return emb;
    };

    ChunkReader reader(sources, orders, identity, N, M, opt.I, device);
    Chunk chunk;
    int64_t start = 0, end = 0;
    reader.next(chunk, start, end, times);
    auto mem_emb = encode(chunk, M);  // [b, M, D]
    auto mem_idx = chunk.idx;
    auto mem_score = torch::zeros({b, M}, mem_emb.options());
    std::vector<torch::Tensor> logits;
    if (extras.logits)
        for (int64_t k = 0; k < b; ++k) logits.push_back(torch::zeros({N, attn->H, attn->n_token}, torch::kFloat32));
    while (reader.next(chunk, start, end, times)) {
        auto iter_emb = encode(chunk, end - start);
        auto all_emb = torch::cat({mem_emb, iter_emb}, 1);  // [b, M + k, D]
        auto all_idx = torch::cat({mem_idx, chunk.idx}, 1);  // [b, M + k]
        // Scores see the positional encoding; the memory keeps the plain embeddings.
        auto l = attn->logits(net->with_pos(all_emb, all_idx));  // [b, H, T, M + k]
        auto score = attn->attention_of(l, torch::Tensor()).mean(1).mean(1);  // [b, M + k], as scores() gives
        // A patch's logits depend on it alone: kept once, when it is first scored.
        if (extras.logits) {
            if (start == M) logits_keep(l, all_idx, logits);
            else logits_keep(l.slice(3, M), chunk.idx, logits);
        }
        auto top = torch::topk(score, M, -1);
        auto pos = std::get<1>(top);
        mem_score = std::get<0>(top);
        mem_emb = all_emb.gather(1, pos.unsqueeze(-1).expand({b, M, net->D}));
        mem_idx = all_idx.gather(1, pos);
    }
    out.idx.index_put_({rows_t}, mem_idx.to(torch::kCPU));
    out.scores.index_put_({rows_t}, mem_score.to(torch::kCPU, torch::kFloat32));
    out.valid.index_put_({rows_t}, torch::ones({b, M}, torch::kBool));
    for (int64_t k = 0; k < int64_t(logits.size()); ++k) out.logits[size_t(rows[size_t(k)])] = logits[size_t(k)];
    if (times) times->patches += N * b;
}

}  // namespace

Shuffle select_shuffle(const SelectOptions& opt, bool train) {
    if (!opt.shuffle || (!train && !opt.shuffle_eval)) return Shuffle::none;
    return opt.shuffle_style == ShuffleStyle::instance ? Shuffle::instance : Shuffle::batch;
}

Selection patches_select(IPSNet& net, const std::vector<PatchSource*>& sources, const SelectOptions& opt,
                         bool train, const torch::Device& device, std::mt19937_64& rng, const SelectExtras& extras) {
    const auto t0 = Clock::now();
    TORCH_CHECK(opt.M >= 1 && opt.I >= 1, "selection needs M >= 1 and I >= 1");
    const int64_t B = static_cast<int64_t>(sources.size());
    Selection out;
    out.idx = torch::full({B, opt.M}, -1, torch::kLong);
    out.scores = torch::zeros({B, opt.M}, torch::kFloat32);
    out.valid = torch::zeros({B, opt.M}, torch::kBool);
    if (extras.logits) out.logits.resize(size_t(B));

    torch::NoGradGuard no_grad;
    const bool was_training = net->is_training();
    net->eval();
    // Images of equal N share encoder calls; a "batch" shuffle is shared within such a group.
    std::map<int64_t, std::vector<int64_t>> groups;
    for (int64_t b = 0; b < B; ++b) groups[sources[b]->size()].push_back(b);
    for (const auto& [N, rows] : groups) {
        std::vector<PatchSource*> members;
        for (int64_t r : rows) members.push_back(sources[r]);
        select_group(net, members, rows, N, opt, select_shuffle(opt, train), device, rng, out, extras);
    }
    if (was_training) net->train();
    out.idx = out.idx.to(device);
    out.scores = out.scores.to(device);
    out.valid = out.valid.to(device);
    if (extras.timed) out.times.total = seconds_since(t0);
    return out;
}

torch::Tensor patch_scores(const torch::Tensor& logits, int64_t N, const torch::Tensor& kept,
                           const torch::Tensor& kept_attn) {
    auto scores = torch::zeros({N}, torch::kFloat32);
    const auto kept_cpu = kept.to(torch::kCPU, torch::kLong);
    if (logits.defined() && kept_cpu.numel() > 0) {
        const auto l = logits.to(torch::kCPU, torch::kFloat64);                    // [N, H, T]
        const auto log_z = torch::logsumexp(l.index_select(0, kept_cpu), 0);       // [H, T]
        scores = (l - log_z).exp().flatten(1).mean(1).to(torch::kFloat32);
    }
    scores.index_put_({kept_cpu}, kept_attn.to(torch::kCPU, torch::kFloat32));
    return scores;
}

torch::Tensor patches_gather(const std::vector<PatchSource*>& sources, const Selection& sel,
                             const torch::Device& device) {
    const int64_t M = sel.idx.size(1);
    auto idx_cpu = sel.idx.to(torch::kCPU);
    auto valid_cpu = sel.valid.to(torch::kCPU);
    std::vector<torch::Tensor> rows;
    for (size_t b = 0; b < sources.size(); ++b) {
        auto keep = idx_cpu[b].index({valid_cpu[b]});
        auto p = source_read_on(*sources[b], keep, device);  // [v, ...]
        if (p.size(0) < M) {
            std::vector<int64_t> pad_shape = p.sizes().vec();
            pad_shape[0] = M - p.size(0);
            p = torch::cat({p, torch::zeros(pad_shape, p.options())}, 0);
        }
        rows.push_back(p);
    }
    return torch::stack(rows);  // [B, M, ...]
}

}  // namespace ips
