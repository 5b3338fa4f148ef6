// `dataset: synthetic`: random inputs of the configured shapes and random targets.
#pragma once

#include "ips/example.h"

namespace ips {

// Deterministic per (seed, split, index). Images: [n_chan_in, H, W] uint8 cut by the config's
// grid; features: [N, n_chan_in] float. n_train / n_test examples.
DatasetPtr synthetic_dataset_make(const Config& cfg, const std::string& split);

}  // namespace ips
