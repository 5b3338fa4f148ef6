// Whole-image reading and PNG writing through libvips (any format libvips reads: JPEG, PNG, TIFF,
// WebP, ...). Region-by-region reading of huge images and slides is a patch source of its own.
#pragma once

#include <torch/torch.h>

#include <string>

namespace ips {

// Starts libvips once per process; safe to call from any thread.
void vips_ensure_init();

// Decodes an image to [C, H, W] uint8 with `channels` bands (1: grey, 3: RGB; alpha is flattened
// on white, grey is repeated to RGB, RGB is turned grey). 16-bit images are scaled to 8 bits.
// Throws std::runtime_error naming the file for a missing, corrupt or unsupported file.
torch::Tensor image_read(const std::string& path, int64_t channels);

// [C, h, w] uint8 resized to [C, H, W] uint8, bilinear (align_corners false, as torchvision's
// Resize on tensors), rounded; returned unchanged when it already has that size.
torch::Tensor image_resize(const torch::Tensor& image, int64_t H, int64_t W);

// ITU-R 601 luma of RGB values [3, ...] (any float dtype, any scale) -> [...]: the grey that
// torchvision's colour transforms and our slide tiles use.
torch::Tensor luma(const torch::Tensor& rgb);

// Writes [C, H, W] uint8 (C = 1 or 3) as a PNG, atomically. Throws naming the file.
void png_write(const std::string& path, const torch::Tensor& image, int compression = 6);

}  // namespace ips
