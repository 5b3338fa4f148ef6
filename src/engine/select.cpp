#include "ips/select.h"

#include <algorithm>
#include <map>
#include <numeric>

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

// Reads positions [start, end) of each image's order and embeds them in one encoder call.
// Returns embeddings [b, end - start, D]; chunk_idx receives the grid indices [b, end - start].
torch::Tensor chunk_embed(IPSNet& net, const std::vector<PatchSource*>& sources,
                          const std::vector<torch::Tensor>& orders, bool identity_order, int64_t start,
                          int64_t end, const torch::Device& device, torch::Tensor* chunk_idx) {
    std::vector<torch::Tensor> patches, idx;
    for (size_t b = 0; b < sources.size(); ++b) {
        auto ids = orders[b].slice(0, start, end);
        // Contiguous runs let file-backed sources read one region instead of scattered patches.
        // Patches travel as stored (uint8, float16) and become float32 on the compute device.
        patches.push_back(identity_order ? source_range_on(*sources[b], start, end - start, device)
                                         : source_read_on(*sources[b], ids, device));
        idx.push_back(ids);
    }
    auto flat = patches.size() == 1 ? patches[0] : torch::cat(patches, 0);  // [b * k, ...]
    *chunk_idx = torch::stack(idx).to(device, /*non_blocking=*/true);  // no stream sync per chunk
    return net->embed(flat).view({static_cast<int64_t>(sources.size()), end - start, net->D});
}

// Selection for images with the same N, in lockstep. Writes rows `rows` of the output tensors.
void select_group(IPSNet& net, const std::vector<PatchSource*>& sources, const std::vector<int64_t>& rows,
                  int64_t N, const SelectOptions& opt, Shuffle shuffle, const torch::Device& device,
                  std::mt19937_64& rng, Selection& out) {
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

    torch::Tensor mem_idx;
    auto mem_emb = chunk_embed(net, sources, orders, identity, 0, M, device, &mem_idx);  // [b, M, D]
    auto mem_score = torch::zeros({b, M}, mem_emb.options());
    for (int64_t start = M; start < N; start += opt.I) {
        const int64_t end = std::min(start + opt.I, N);
        torch::Tensor iter_idx;
        auto iter_emb = chunk_embed(net, sources, orders, identity, start, end, device, &iter_idx);
        auto all_emb = torch::cat({mem_emb, iter_emb}, 1);  // [b, M + k, D]
        auto all_idx = torch::cat({mem_idx, iter_idx}, 1);  // [b, M + k]
        // Scores see the positional encoding; the memory keeps the plain embeddings.
        auto score = attn->scores(net->with_pos(all_emb, all_idx), torch::Tensor());  // [b, M + k]
        auto top = torch::topk(score, M, -1);
        auto pos = std::get<1>(top);
        mem_score = std::get<0>(top);
        mem_emb = all_emb.gather(1, pos.unsqueeze(-1).expand({b, M, net->D}));
        mem_idx = all_idx.gather(1, pos);
    }
    out.idx.index_put_({rows_t}, mem_idx.to(torch::kCPU));
    out.scores.index_put_({rows_t}, mem_score.to(torch::kCPU, torch::kFloat32));
    out.valid.index_put_({rows_t}, torch::ones({b, M}, torch::kBool));
}

}  // namespace

Shuffle select_shuffle(const SelectOptions& opt, bool train) {
    if (!opt.shuffle || (!train && !opt.shuffle_eval)) return Shuffle::none;
    return opt.shuffle_style == ShuffleStyle::instance ? Shuffle::instance : Shuffle::batch;
}

Selection patches_select(IPSNet& net, const std::vector<PatchSource*>& sources, const SelectOptions& opt,
                         bool train, const torch::Device& device, std::mt19937_64& rng) {
    TORCH_CHECK(opt.M >= 1 && opt.I >= 1, "selection needs M >= 1 and I >= 1");
    const int64_t B = static_cast<int64_t>(sources.size());
    Selection out;
    out.idx = torch::full({B, opt.M}, -1, torch::kLong);
    out.scores = torch::zeros({B, opt.M}, torch::kFloat32);
    out.valid = torch::zeros({B, opt.M}, torch::kBool);

    torch::NoGradGuard no_grad;
    const bool was_training = net->is_training();
    net->eval();
    // Images of equal N share encoder calls; a "batch" shuffle is shared within such a group.
    std::map<int64_t, std::vector<int64_t>> groups;
    for (int64_t b = 0; b < B; ++b) groups[sources[b]->size()].push_back(b);
    for (const auto& [N, rows] : groups) {
        std::vector<PatchSource*> members;
        for (int64_t r : rows) members.push_back(sources[r]);
        select_group(net, members, rows, N, opt, select_shuffle(opt, train), device, rng, out);
    }
    if (was_training) net->train();
    out.idx = out.idx.to(device);
    out.scores = out.scores.to(device);
    out.valid = out.valid.to(device);
    return out;
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
