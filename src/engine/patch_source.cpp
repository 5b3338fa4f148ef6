#include "ips/patch_source.h"

#include <stdexcept>

namespace ips {
namespace {

using torch::indexing::Slice;

// uint8 pixels become [0, 1]; other dtypes are taken as already scaled.
torch::Tensor to_float(const torch::Tensor& t) {
    if (t.scalar_type() == torch::kUInt8) return t.to(torch::kFloat32).div_(255.0);
    return t.to(torch::kFloat32);
}

void check_indices(const torch::Tensor& idx, int64_t n) {
    if (idx.numel() == 0) return;
    auto mm = torch::aminmax(idx);
    int64_t lo = std::get<0>(mm).item<int64_t>(), hi = std::get<1>(mm).item<int64_t>();
    if (lo < 0 || hi >= n)
        throw std::out_of_range("patch index out of range [0, " + std::to_string(n) + "): " +
                                std::to_string(lo < 0 ? lo : hi));
}

struct TensorSource : PatchSource {
    explicit TensorSource(torch::Tensor d) : data(std::move(d)) {
        if (data.dim() < 2) throw std::invalid_argument("tensor patch source needs [N, ...] data");
    }
    int64_t size() const override { return data.size(0); }
    std::vector<int64_t> patch_shape() const override {
        return std::vector<int64_t>(data.sizes().begin() + 1, data.sizes().end());
    }
    torch::Tensor read(const torch::Tensor& idx) override { return to_float(read_stored(idx)); }
    torch::Tensor read_range(int64_t start, int64_t count) override { return to_float(read_range_stored(start, count)); }
    torch::Tensor read_stored(const torch::Tensor& idx) override {
        check_indices(idx, size());
        auto i = idx.to(data.device(), torch::kLong);
        if (!data.is_pinned()) return data.index_select(0, i);
        // Gathered straight into page-locked memory, so the copy to the GPU can be asynchronous.
        std::vector<int64_t> shape = data.sizes().vec();
        shape[0] = i.numel();
        auto out = torch::empty(shape, data.options().pinned_memory(true));
        return torch::index_select_out(out, data, 0, i);
    }
    torch::Tensor read_range_stored(int64_t start, int64_t count) override { return data.narrow(0, start, count); }
    torch::Tensor stored_to_float(const torch::Tensor& stored) const override { return to_float(stored); }
    torch::Device device() const override { return data.device(); }
    std::shared_ptr<PatchSource> to(const torch::Device& d) override {
        return std::make_shared<TensorSource>(data.to(d));
    }
    torch::Tensor data;  // [N, ...]
};

struct ImageGridSource : PatchSource {
    ImageGridSource(torch::Tensor img, std::array<int64_t, 2> p, std::array<int64_t, 2> s,
                    Normalization n)
        : image(std::move(img)), patch(p), stride(s), norm(std::move(n)) {
        if (image.dim() != 3) throw std::invalid_argument("image patch source needs a [C, H, W] image");
        grid = grid_shape(image.size(1), image.size(2), patch, stride);
        if (!norm.mean.empty()) {
            if (static_cast<int64_t>(norm.mean.size()) != image.size(0))
                throw std::invalid_argument("normalisation has " + std::to_string(norm.mean.size()) +
                                            " channels, the image " + std::to_string(image.size(0)));
            mean = torch::tensor(norm.mean).view({-1, 1, 1}).to(image.device());
            std_ = torch::tensor(norm.std).view({-1, 1, 1}).to(image.device());
        }
    }
    int64_t size() const override { return grid[0] * grid[1]; }
    std::vector<int64_t> patch_shape() const override { return {image.size(0), patch[0], patch[1]}; }
    torch::Tensor read(const torch::Tensor& idx) override { return stored_to_float(read_stored(idx)); }
    torch::Tensor read_stored(const torch::Tensor& idx) override {
        check_indices(idx, size());
        auto i = idx.to(image.device(), torch::kLong);
        // A strided view of all patches [C, rows, cols, P_h, P_w]; only the indexed ones are copied.
        auto all = image.unfold(1, patch[0], stride[0]).unfold(2, patch[1], stride[1]);
        auto picked = all.index({Slice(), torch::div(i, grid[1], "floor"), torch::remainder(i, grid[1])});
        return picked.permute({1, 0, 2, 3}).contiguous();  // [K, C, P_h, P_w]
    }
    torch::Tensor stored_to_float(const torch::Tensor& stored) const override {
        auto out = to_float(stored);
        if (mean.defined()) out = (out - mean.to(out.device())) / std_.to(out.device());
        return out;
    }
    torch::Device device() const override { return image.device(); }
    std::shared_ptr<PatchSource> to(const torch::Device& d) override {
        return std::make_shared<ImageGridSource>(image.to(d), patch, stride, norm);
    }
    int64_t grid_cols() const override { return grid[1]; }
    std::array<int64_t, 2> patch_origin(int64_t n) const override {
        return {(n % grid[1]) * stride[1], (n / grid[1]) * stride[0]};
    }

    torch::Tensor image;  // [C, H, W]
    std::array<int64_t, 2> patch, stride, grid;
    Normalization norm;
    torch::Tensor mean, std_;  // [C, 1, 1]
};

}  // namespace

torch::Tensor PatchSource::read_range(int64_t start, int64_t count) {
    return read(torch::arange(start, start + count, torch::kLong));
}

torch::Tensor PatchSource::read_range_stored(int64_t start, int64_t count) {
    return read_stored(torch::arange(start, start + count, torch::kLong));
}

PatchSourcePtr tensor_source_make(torch::Tensor data) { return std::make_shared<TensorSource>(std::move(data)); }

Normalization normalization_of(Normalize n) {
    if (n == Normalize::imagenet) return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}};
    return {};
}

PatchSourcePtr image_source_make(torch::Tensor image, const DataOptions& data) {
    return image_grid_source_make(std::move(image), data.patch_size, data.patch_stride, normalization_of(data.normalize));
}

torch::Tensor source_read_on(PatchSource& source, const torch::Tensor& idx, const torch::Device& device) {
    return source.stored_to_float(source.read_stored(idx).to(device, /*non_blocking=*/true));
}

torch::Tensor source_range_on(PatchSource& source, int64_t start, int64_t count, const torch::Device& device) {
    return source.stored_to_float(source.read_range_stored(start, count).to(device, /*non_blocking=*/true));
}

std::array<int64_t, 2> grid_shape(int64_t H, int64_t W, std::array<int64_t, 2> patch,
                                  std::array<int64_t, 2> stride) {
    if (patch[0] > H || patch[1] > W)
        throw std::invalid_argument("patch " + std::to_string(patch[0]) + "x" + std::to_string(patch[1]) +
                                    " is larger than the image " + std::to_string(H) + "x" +
                                    std::to_string(W));
    if (stride[0] < 1 || stride[1] < 1) throw std::invalid_argument("patch stride must be >= 1");
    return {(H - patch[0]) / stride[0] + 1, (W - patch[1]) / stride[1] + 1};
}

PatchSourcePtr image_grid_source_make(torch::Tensor image, std::array<int64_t, 2> patch,
                                      std::array<int64_t, 2> stride, Normalization norm) {
    return std::make_shared<ImageGridSource>(std::move(image), patch, stride, std::move(norm));
}

}  // namespace ips
