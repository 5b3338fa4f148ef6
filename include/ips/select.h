// Iterative patch selection (SPEC §1.1): no gradients, encoder and transformer in eval mode,
// memory of M embeddings, chunks of I patches, top-M by cross-attention score.
// Device memory is bounded by the memory buffer plus one chunk: a source that lives on the host
// is read and copied one chunk at a time.
#pragma once

#include <functional>
#include <random>

#include "ips/model.h"
#include "ips/patch_source.h"

namespace ips {

enum class Shuffle { none, batch, instance };

// The patch order selection uses: the configured shuffle in training, none at evaluation unless
// shuffle_eval asks for it (the reference shuffles at evaluation too).
Shuffle select_shuffle(const SelectOptions& opt, bool train);

// Where selection's time went (with SelectExtras::timed), in seconds.
struct SelectTimes {
    double total = 0;      // the whole patches_select call
    double encode = 0;     // encoder on the chunks (device synchronised per chunk)
    double read_wait = 0;  // waiting for a chunk the reader thread had not finished
    int64_t patches = 0;   // patches encoded
};

struct Selection {
    torch::Tensor idx;     // [B, M] int64 grid indices, best first; -1 where the image has < M patches
    torch::Tensor scores;  // [B, M] float, score in the last iteration (0 where nothing was scored)
    torch::Tensor valid;   // [B, M] bool, false for padding rows (N < M)
    // With SelectExtras::logits: per image, the aggregator's attention logits of every patch as selection
    // scored it, [N, H, T] float32 on the CPU (patch_scores turns them into whole-image scores).
    // Undefined where nothing was scored (N <= M: every patch is kept).
    std::vector<torch::Tensor> logits;
    SelectTimes times;
};

// What selection computes beyond the kept patches: every patch's logits (costs N x H x T floats
// of host memory per image and a copy per chunk) and timings (costs a device sync per chunk).
struct SelectExtras {
    bool logits = false;
    bool timed = false;
    std::function<void(int64_t)> on_patches;  // called with the number of patches of each chunk encoded
};

// Selects opt.M patches from each source, encoding and scoring on `device`. Sources with equal N
// are processed in lockstep (one encoder call per chunk for all of them); others one at a time.
// The net's train/eval mode is restored. Extras leave the selection unchanged.
Selection patches_select(IPSNet& net, const std::vector<PatchSource*>& sources, const SelectOptions& opt,
                         bool train, const torch::Device& device, std::mt19937_64& rng,
                         const SelectExtras& extras = {});

// A score for every patch of one image that is comparable across the whole image: the attention
// the aggregator would give the patch if the softmax of each head and token were normalised by
// the kept patches, score_n = mean over (h, t) of exp(l[n,h,t] - logsumexp over kept m of l[m,h,t]).
// For the kept patches this is their attention in the aggregator, so the two orderings agree; the
// kept patches' own attention `kept_attn` [K] (attention_per_patch) is used for them verbatim.
// logits: [N, H, T] (Selection::logits, or undefined when every patch is kept); kept: [K] int64
// grid indices. Returns [N] float32 on the CPU (with undefined logits, zero but for the kept).
torch::Tensor patch_scores(const torch::Tensor& logits, int64_t N, const torch::Tensor& kept,
                           const torch::Tensor& kept_attn);

// Reads the selected patches once: [B, M, ...patch_shape] on `device`, zeros in padding rows.
torch::Tensor patches_gather(const std::vector<PatchSource*>& sources, const Selection& sel,
                             const torch::Device& device);

}  // namespace ips
