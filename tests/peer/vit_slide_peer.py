"""Features of slide tiles the way a TRIDENT-style Python pipeline computes them: openslide-python
reads each tile at the bag's coordinates, torchvision-style transforms on tensors (the shorter side
resized with antialiasing, a centre crop, mean/std), then the independent ViT of vit_peer.py,
batch by batch. The parity tests compare `ips features` with this, and docs/BENCHMARKS.md times it.

    python3 vit_slide_peer.py weights ARCH.json OUT.pt [ARCH.json OUT.pt ...]   random weights in the layout's keys
    python3 vit_slide_peer.py features ARCH.json WEIGHTS SLIDE BAG OUT.pt [--batch 64] [--threads N]
    python3 vit_slide_peer.py features-each JOBS.json     the same for each {arch, weights, slide, bag, out}

ARCH.json: vit_peer's case keys (dim, depth, heads, mlp_hidden, mlp, patch, img, cls, regs,
no_embed_class, layer_scale, eps, pool, keys, pos_resample, pos_load; file_img for a file whose
pos_embed grid is not the built one) plus the transform: tile (side read at level 0),
resize, input, bicubic, mean, std. BAG: an HDF5 file with `coords` (level-0 x, y), as ips and
TRIDENT write them. OUT.pt: {"features": [N, F] float32}; the last line printed is JSON with
tiles, seconds and tiles_per_s.
"""
import json
import os
import sys
import time

import h5py
import numpy as np
import openslide
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vit_peer  # noqa: E402


def transform(tiles, a):
    """tiles: [n, 3, s, s] float in [0, 1] -> the model's input, as torchvision's Resize,
    CenterCrop and Normalize do it on tensors."""
    h, w = tiles.shape[-2:]
    if min(h, w) != a["resize"]:
        size = (a["resize"], int(a["resize"] * w / h)) if h <= w else (int(a["resize"] * h / w), a["resize"])
        tiles = F.interpolate(tiles, size=size, mode="bicubic" if a["bicubic"] else "bilinear",
                              align_corners=False, antialias=True)
        h, w = size
    crop = a["input"]
    top, left = int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))
    tiles = tiles[..., top:top + crop, left:left + crop]
    mean = torch.tensor(a["mean"], dtype=tiles.dtype).view(1, -1, 1, 1)
    std = torch.tensor(a["std"], dtype=tiles.dtype).view(1, -1, 1, 1)
    return (tiles - mean) / std


def weights(arch_path, out):
    with open(arch_path) as f:
        a = json.load(f)
    g = torch.Generator().manual_seed(4321)
    torch.save(vit_peer.file_layout(vit_peer.timm_weights(a, g), a, g), out)


def timm_of(a, sd):
    """The timm names the peer's forward reads, from a file in any of the layouts."""
    if a["keys"] == "conch":
        return {k.split(".", 2)[2] if k.startswith("visual.trunk.") else k[len("visual."):]: v
                for k, v in sd.items() if k.startswith("visual.trunk.") or k.startswith("visual.attn_pool_contrast.")
                or k.startswith("visual.ln_contrast.")}
    if a["keys"] == "conch_v15":
        return {k[len("trunk."):] if k.startswith("trunk.") else k: v for k, v in sd.items()}
    if a["keys"] not in ("hf_vit", "hf_dinov2"):
        return sd
    out = {"cls_token": sd["embeddings.cls_token"], "pos_embed": sd["embeddings.position_embeddings"],
           "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"]}
    if a["regs"]:
        # Dinov2Model: the class token's position embedding is added to it before the registers
        # (which have none) are put in.
        out["reg_token"] = sd["embeddings.register_tokens"]
        out["cls_token"] = out["cls_token"] + out["pos_embed"][:, :1]
        out["pos_embed"] = out["pos_embed"][:, 1:]
    if a["keys"] == "hf_vit":
        pairs = (("layernorm_before", "norm1"), ("attention.output.dense", "attn.proj"), ("layernorm_after", "norm2"),
                 ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"))
    else:
        mlp = ("weights_in", "weights_out") if a["mlp"] == "swiglu_packed" else ("fc1", "fc2")
        pairs = (("norm1", "norm1"), ("attention.output.dense", "attn.proj"), ("norm2", "norm2"),
                 ("mlp." + mlp[0], "mlp.fc1"), ("mlp." + mlp[1], "mlp.fc2"))
    for i in range(a["depth"]):
        b, h = "blocks.%d." % i, "encoder.layer.%d." % i
        att = h + "attention.attention."
        out[b + "attn.qkv.weight"] = torch.cat([sd[att + n + ".weight"] for n in ("query", "key", "value")])
        out[b + "attn.qkv.bias"] = torch.cat([sd[att + n + ".bias"] for n in ("query", "key", "value")])
        for hf, timm in pairs:
            out[b + timm + ".weight"], out[b + timm + ".bias"] = sd[h + hf + ".weight"], sd[h + hf + ".bias"]
        if a["keys"] == "hf_dinov2":
            out[b + "ls1.gamma"], out[b + "ls2.gamma"] = sd[h + "layer_scale1.lambda1"], sd[h + "layer_scale2.lambda1"]
    return out


def features(arch_path, weights_path, slide_path, bag_path, out, batch=64):
    with open(arch_path) as f:
        a = json.load(f)
    sd = vit_peer.load_fit(timm_of(a, {k: v.float() for k, v in torch.load(weights_path).items()}), a)
    with h5py.File(bag_path, "r") as f:
        coords = np.asarray(f["coords"][:], dtype=np.int64)
    slide = openslide.OpenSlide(slide_path)
    side = a["tile"]
    start = time.time()
    chunks = []
    with torch.no_grad():
        for b in range(0, len(coords), batch):
            tiles = []
            for x, y in coords[b:b + batch]:
                rgb = np.asarray(slide.read_region((int(x), int(y)), 0, (side, side)).convert("RGB"))
                tiles.append(torch.from_numpy(rgb.copy()).permute(2, 0, 1))
            x = transform(torch.stack(tiles).float() / 255.0, a)
            chunks.append(vit_peer.pooled(vit_peer.vit_tokens(sd, a, x), a, sd))
    seconds = time.time() - start
    feats = torch.cat(chunks) if chunks else torch.empty(0, 0)
    torch.save({"features": feats}, out)
    print(json.dumps({"tiles": len(coords), "seconds": seconds, "tiles_per_s": len(coords) / max(seconds, 1e-9)}))


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--threads" in args:
        i = args.index("--threads")
        torch.set_num_threads(int(args[i + 1]))
        del args[i:i + 2]
    batch = 64
    if "--batch" in args:
        i = args.index("--batch")
        batch = int(args[i + 1])
        del args[i:i + 2]
    # Several jobs in one process: the tests pay for importing torch once, not once per case.
    if len(args) >= 3 and len(args) % 2 == 1 and args[0] == "weights":
        for k in range(1, len(args), 2):
            weights(args[k], args[k + 1])
    elif len(args) == 6 and args[0] == "features":
        features(args[1], args[2], args[3], args[4], args[5], batch)
    elif len(args) == 2 and args[0] == "features-each":
        with open(args[1]) as f:
            for job in json.load(f):
                features(job["arch"], job["weights"], job["slide"], job["bag"], job["out"], batch)
    else:
        sys.exit(__doc__)
