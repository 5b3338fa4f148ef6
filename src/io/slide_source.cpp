// The patch source over a slide's tiles: reads only the tiles selection asks for, on all cores.
#include <ATen/Parallel.h>

#include "ips/slide_source.h"

#include "ips/image_io.h"

namespace ips {
namespace {

struct SlideSource : PatchSource, std::enable_shared_from_this<SlideSource> {
    SlideSource(SlidePtr s, TileGrid g, int64_t c, Normalization n, int64_t o)
        : slide(std::move(s)), grid(std::move(g)), channels(c), norm(std::move(n)), out(o) {
        if (channels != 1 && channels != 3)
            throw std::invalid_argument("slide patches have 1 or 3 channels, not " + std::to_string(channels));
        if (!grid.coords.defined() || grid.coords.dim() != 2 || grid.coords.size(1) != 2)
            throw std::invalid_argument("slide tile grid needs coords [N, 2]");
        grid.coords = grid.coords.to(torch::kCPU, torch::kLong).contiguous();
        if (!norm.mean.empty()) {
            if (int64_t(norm.mean.size()) != channels)
                throw std::invalid_argument("normalisation has " + std::to_string(norm.mean.size()) +
                                            " channels, the patches " + std::to_string(channels));
            mean = torch::tensor(norm.mean).view({1, -1, 1, 1});
            std_ = torch::tensor(norm.std).view({1, -1, 1, 1});
        }
    }
    int64_t side() const { return out > 0 ? out : grid.patch; }
    int64_t size() const override { return grid.coords.size(0); }
    std::vector<int64_t> patch_shape() const override { return {channels, side(), side()}; }

    // RGB tiles read at their own size are stored as the slide gives them, uint8; grey and resized
    // tiles are computed in float32, so that is how they are stored.
    bool stores_bytes() const { return channels == 3 && side() == grid.patch; }

    torch::Tensor read(const torch::Tensor& idx) override {
        return stores_bytes() ? stored_to_float(read_stored(idx)) : decode(idx, /*bytes=*/false);
    }
    torch::Tensor read_stored(const torch::Tensor& idx) override { return decode(idx, stores_bytes()); }
    torch::Tensor stored_to_float(const torch::Tensor& stored) const override {
        if (stored.scalar_type() != torch::kByte) return stored;
        auto x = stored.to(torch::kFloat32).div_(255.0);
        if (mean.defined()) x.sub_(mean.to(x.device())).div_(std_.to(x.device()));
        return x;
    }

    // The tiles at `idx_any`: uint8 as read (bytes), or float32 in [0, 1], grey or resized as
    // asked, then normalised.
    torch::Tensor decode(const torch::Tensor& idx_any, bool bytes) {
        const auto idx = idx_any.to(torch::kCPU, torch::kLong).contiguous();
        const int64_t K = idx.numel(), N = size();
        const auto* ip = idx.data_ptr<int64_t>();
        for (int64_t k = 0; k < K; ++k)
            if (ip[k] < 0 || ip[k] >= N)
                throw std::out_of_range("patch index out of range [0, " + std::to_string(N) + "): " + std::to_string(ip[k]));
        auto result = torch::empty({K, channels, side(), side()}, bytes ? torch::kByte : torch::kFloat32);
        const auto coords = grid.coords.accessor<int64_t, 2>();
        // Decoding dominates: one tile per task, torch ops inside run single-threaded.
        at::parallel_for(0, K, 1, [&](int64_t begin, int64_t end) {
            for (int64_t k = begin; k < end; ++k) {
                auto tile = slide_read_region(*slide, grid.level, coords[ip[k]][0], coords[ip[k]][1], grid.patch, grid.patch);
                if (bytes) {
                    result[k].copy_(tile);
                    continue;
                }
                tile = tile.to(torch::kFloat32).div_(255.0);  // [3, P, P]
                if (channels == 1)
                    tile = luma(tile).unsqueeze(0);
                if (out > 0 && out != grid.patch) {
                    namespace F = torch::nn::functional;
                    auto opt = F::InterpolateFuncOptions().size(std::vector<int64_t>{out, out});
                    opt = out < grid.patch ? opt.mode(torch::kArea) : opt.mode(torch::kBilinear).align_corners(false);
                    tile = F::interpolate(tile.unsqueeze(0), opt).squeeze(0);
                }
                result[k].copy_(tile);
            }
        });
        if (!bytes && mean.defined()) result.sub_(mean).div_(std_);
        return result;
    }
    torch::Device device() const override { return torch::kCPU; }
    // A file cannot move; callers copy each chunk they read to the device.
    std::shared_ptr<PatchSource> to(const torch::Device&) override { return shared_from_this(); }
    int64_t grid_cols() const override { return grid.cols; }
    std::array<int64_t, 2> patch_origin(int64_t n) const override {
        const int64_t* c = grid.coords.data_ptr<int64_t>() + 2 * n;
        return {c[0], c[1]};
    }

    SlidePtr slide;
    TileGrid grid;
    int64_t channels;
    Normalization norm;
    int64_t out;
    torch::Tensor mean, std_;
};

}  // namespace

PatchSourcePtr slide_source_make(SlidePtr slide, TileGrid grid, int64_t channels, Normalization norm, int64_t out) {
    if (out == 0) out = grid.out;
    return std::make_shared<SlideSource>(std::move(slide), std::move(grid), channels, std::move(norm), out);
}

}  // namespace ips
