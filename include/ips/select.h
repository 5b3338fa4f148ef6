// Iterative patch selection (SPEC §1.1): no gradients, encoder and transformer in eval mode,
// memory of M embeddings, chunks of I patches, top-M by cross-attention score.
// Device memory is bounded by the memory buffer plus one chunk: a source that lives on the host
// is read and copied one chunk at a time.
#pragma once

#include <random>

#include "ips/model.h"
#include "ips/patch_source.h"

namespace ips {

enum class Shuffle { none, batch, instance };

// The patch order selection uses: the configured shuffle in training, none at evaluation unless
// shuffle_eval asks for it (the reference shuffles at evaluation too).
Shuffle select_shuffle(const SelectOptions& opt, bool train);

struct Selection {
    torch::Tensor idx;     // [B, M] int64 grid indices, best first; -1 where the image has < M patches
    torch::Tensor scores;  // [B, M] float, score in the last iteration (0 where nothing was scored)
    torch::Tensor valid;   // [B, M] bool, false for padding rows (N < M)
};

// Selects opt.M patches from each source, encoding and scoring on `device`. Sources with equal N
// are processed in lockstep (one encoder call per chunk for all of them); others one at a time.
// The net's train/eval mode is restored.
Selection patches_select(IPSNet& net, const std::vector<PatchSource*>& sources, const SelectOptions& opt,
                         bool train, const torch::Device& device, std::mt19937_64& rng);

// Reads the selected patches once: [B, M, ...patch_shape] on `device`, zeros in padding rows.
torch::Tensor patches_gather(const std::vector<PatchSource*>& sources, const Selection& sel,
                             const torch::Device& device);

}  // namespace ips
