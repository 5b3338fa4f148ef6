// A patch source hands out the patches of one image (or bag) by grid index. Selection and training
// only ever talk to this interface, so the reference's eager / eager-sequential / lazy modes are
// decided by where a source's data lives (source_to) and how many images share a selection call,
// not by separate code paths.
#pragma once

#include <torch/torch.h>

#include <array>
#include <memory>
#include <string>

#include "ips/config.h"

namespace ips {

struct PatchSource {
    virtual ~PatchSource() = default;
    // Number of patches N in the grid (row-major index n = row * n_cols + col).
    virtual int64_t size() const = 0;
    // Shape of one patch as returned by read(): {C, P_h, P_w} or {F}.
    virtual std::vector<int64_t> patch_shape() const = 0;
    // Patches for the given grid indices. idx: [K] int64 (any device). Returns [K, ...patch_shape]
    // float32 on device(). Indices must be in [0, size()).
    virtual torch::Tensor read(const torch::Tensor& idx) = 0;
    // Patches [start, start + count). Sources that can read contiguous runs faster override this.
    virtual torch::Tensor read_range(int64_t start, int64_t count);
    // The same patches as read() / read_range(), as stored: uint8 pixels or float16 features, not
    // yet scaled or normalised. Selection copies these to the compute device chunk by chunk (a
    // quarter or half the bytes of float32) and finishes them there with stored_to_float().
    virtual torch::Tensor read_stored(const torch::Tensor& idx) { return read(idx); }
    virtual torch::Tensor read_range_stored(int64_t start, int64_t count);
    // Stored patches (on any device) -> what read() returns, on the same device.
    virtual torch::Tensor stored_to_float(const torch::Tensor& stored) const { return stored; }
    // Where read() returns its tensors.
    virtual torch::Device device() const = 0;
    // A source whose data lives on `device` (itself if it already does, or if it cannot move,
    // e.g. a file read on demand: then read() results are copied chunk by chunk by the caller).
    virtual std::shared_ptr<PatchSource> to(const torch::Device& device) = 0;
    // Grid geometry, for heat maps: number of grid columns and the patch's top-left in pixels.
    virtual int64_t grid_cols() const { return 1; }
    virtual std::array<int64_t, 2> patch_origin(int64_t /*n*/) const { return {0, 0}; }
};
using PatchSourcePtr = std::shared_ptr<PatchSource>;

// Patches already cut: data [N, ...] (any float or uint8 dtype; uint8 is scaled to [0, 1]).
PatchSourcePtr tensor_source_make(torch::Tensor data);

// Per-channel normalisation applied to patches after scaling to [0, 1].
struct Normalization {
    std::vector<float> mean, std;  // empty = none
};
Normalization normalization_of(Normalize n);

// A whole image tensor [C, H, W] (uint8 or float) cut into a grid of patches on demand:
// patch (P_h, P_w), stride (S_h, S_w); overlapping strides allowed. Patches that would cross the
// border are not part of the grid: n_rows = (H - P_h) / S_h + 1.
PatchSourcePtr image_grid_source_make(torch::Tensor image, std::array<int64_t, 2> patch,
                                      std::array<int64_t, 2> stride, Normalization norm = {});

// The image cut by the data options' grid (patch_size, patch_stride) and normalised as they say.
PatchSourcePtr image_source_make(torch::Tensor image, const DataOptions& data);

// Patches as read() gives them, but read as stored and converted on `device`: the copy moves the
// stored bytes (uint8, float16), a quarter or half of float32. idx: [K] -> [K, ...patch_shape].
torch::Tensor source_read_on(PatchSource& source, const torch::Tensor& idx, const torch::Device& device);
// The same for the run of patches [start, start + count).
torch::Tensor source_range_on(PatchSource& source, int64_t start, int64_t count, const torch::Device& device);

// Grid size for an image: {n_rows, n_cols}. Throws std::invalid_argument if the patch exceeds the image.
std::array<int64_t, 2> grid_shape(int64_t H, int64_t W, std::array<int64_t, 2> patch,
                                  std::array<int64_t, 2> stride);

}  // namespace ips
