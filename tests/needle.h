// A generated pyramid with a known "needle" (a dark box over four tiles) and a model whose
// attention points at it: the aggregator's key projection is set along the direction that
// separates the needle tile's embedding from the texture's. The model is made, not trained, so
// what the tests check is where scores land (selection, whole-slide scores, the files drawn from
// them), not whether training finds the needle.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "ips/checkpoint.h"
#include "ips/config.h"
#include "ips/model.h"
#include "ips/slide.h"
#include "ips/slide_source.h"

namespace ips::test {

inline const std::string kSlideTinyYaml = std::string(IPS_SOURCE_DIR) + "/tests/fixtures/slide_tiny.yaml";

struct NeedleScene {
    int64_t width = 2048, height = 1536, tile = 128;
    NeedleBox needle{1024, 512, 256, 256};
    int64_t cols() const { return width / tile; }
    int64_t N() const { return cols() * (height / tile); }
    // Grid indices of the needle's tiles, row-major.
    std::vector<int64_t> needle_tiles() const {
        std::vector<int64_t> out;
        for (int64_t y = needle.y; y < needle.y + needle.h; y += tile)
            for (int64_t x = needle.x; x < needle.x + needle.w; x += tile) out.push_back((y / tile) * cols() + x / tile);
        return out;
    }
    void write(const std::string& path, uint64_t seed = 7) const {
        pyramid_tiff_write(path, width, height, seed, 90, {needle});
    }
};

// Points the net's attention at the needle of `slide` (written by NeedleScene). Returns the margin:
// the needle tile's key projection minus the highest of the other tiles' (> 0 or the scene fails).
inline double needle_net_point(IPSNet& net, const Config& cfg, const std::string& slide, const NeedleScene& scene) {
    torch::NoGradGuard no_grad;
    net->eval();
    auto s = slide_open(slide);
    const TileGrid grid = tile_grid_full(*s, 0, scene.tile, scene.tile);
    auto source = slide_source_make(s, grid, 3, normalization_of(cfg.data.normalize));
    const auto emb = net->embed(source->read_range(0, source->size()));  // [N, D]
    const auto needle = torch::tensor(scene.needle_tiles(), torch::kLong);
    auto other = torch::ones({source->size()}, torch::kBool);
    other.index_put_({needle}, false);
    auto u = emb.index_select(0, needle).mean(0) - emb.index({other}).mean(0);
    u = u / u.norm();
    auto& attn = net->transf->crs_attn;
    const int64_t D = emb.size(1), Dk = attn->D_k;
    attn->q.fill_(1.0);
    attn->q_w->weight.zero_();
    attn->k_w->weight.zero_();
    const double alpha = 40.0;  // sharp: the needle's attention dominates
    for (int64_t h = 0; h < attn->H; ++h) {
        attn->q_w->weight[h * Dk].fill_(alpha / double(D));
        attn->k_w->weight[h * Dk].copy_(u);
    }
    const auto proj = emb.matmul(u);
    return (proj.index_select(0, needle).min() - proj.index({other}).max()).item<double>();
}

// The pointed net saved as an ips checkpoint, for runs of the binary.
inline void needle_weights_save(const std::string& path, const Config& cfg, const std::string& slide,
                                const NeedleScene& scene) {
    IPSNet net = net_make(cfg.model, cfg.compute, cfg.seed);
    needle_net_point(net, cfg, slide, scene);
    checkpoint_save(path, net, nullptr, CheckpointMeta{});
}

}  // namespace ips::test
