// ViT weight files (vit.h) as users have them: timm's layout, Hugging Face's ViTModel layout,
// and the prefixes model repositories put around a trunk; torch.save or safetensors files.
#pragma once

#include <string>

#include "ips/torch_file.h"
#include "ips/vit.h"

namespace ips {

// The key layouts weight files come in, mapped onto timm's names.
enum class VitKeys {
    automatic,    // told apart by their keys
    timm,         // as the module names them (UNI, Virchow, H-optimus, GigaPath, Kaiko files)
    hf_vit,       // Hugging Face ViTModel (Phikon) and Dinov2Model (Phikon-v2, Hibou): embeddings.*,
                  // encoder.layer.N.attention.attention.{query,key,value}, ...
};

// The state dict in timm's names: Hugging Face's separate query/key/value become one qkv, and a
// Dinov2Model with registers has its class token's position embedding folded into the token; the
// prefixes a file puts around the trunk ("module.", "model.", "visual.trunk.", "trunk.",
// "visual.", "vit.", "dinov2.") are dropped, and so are entries outside the image features: a classifier head
// (head.*), Hugging Face's pooler and mask token, CONCH's text tower, captioning pooler and
// contrastive projection (its attn_pool_contrast and ln_contrast are kept: the attn_pool pooling).
// `layout` automatic tells Hugging Face files by their embeddings.* keys.
NamedTensors vit_keys_timm(const NamedTensors& sd, VitKeys layout = VitKeys::automatic);

// Loads a weight file (torch.save or safetensors, through weights_read) into the trunk, strictly:
// a file that does not fit names its missing, unexpected and mis-shaped keys and the file. A
// pos_embed of another square grid is refused, resampled or adopted as the options' pos_load says.
// Half and bfloat16 weights are converted to the module's dtype.
void vit_load(Vit& vit, const std::string& path, VitKeys layout = VitKeys::automatic);

// A pos_embed about to be loaded into `vit` (from `path`, for messages), when its grid is not the
// trunk's: resampled in place or adopted by the trunk as the options' pos_load says; left as it is
// otherwise (the strict load names a mis-shape). Checkpoints of a trunk that adopted a grid pass
// their pos_embed through here too, so they load into a freshly built trunk.
void vit_pos_embed_take(Vit& vit, torch::Tensor& pos, const std::string& path);

}  // namespace ips
