"""An independent ViT for the parity tests of ips's ViT trunk (tests/interop/vit_weights_test.cpp).

Written from the architecture as timm and the models' repositories describe it (not from ips's
code), with plain torch ops: patch embedding, class and register tokens, absolute position
embeddings (added before or after the prefix tokens are joined, resampled bicubically with
antialiasing for another grid), pre-norm blocks with fused qkv attention, GELU or packed SwiGLU
MLPs, LayerScale, the final norm and the pooling (class token, class token + patch mean, mean,
CONCH v1's and v1.5's attentional poolers). Position embeddings of another grid: resampled at
load (bilinear, CONCH v1.5) or kept as the file has them, and per input as timm, Hugging Face's
Dinov2Model or DINO (CONCH v1.5) resample them.

    python3 vit_peer.py make DIR
    python3 vit_peer.py shapes PRESETS.jsonl

`make` writes per case CASE.pt (random weights in the case's key layout: timm's, Hugging Face
ViTModel's with its pooler, Dinov2Model's, CONCH's), input.pt, CASE_out.pt (tokens and pooled output) and cases.json;
`shapes` prints every parameter's name and shape of full-size presets from their build arguments
(the lines of `ips encoders --json`), with their count.
"""
import json
import math
import sys

import torch
import torch.nn.functional as F
import torch_kernels  # noqa: E402,F401 (turns off wrong oneDNN kernels)

# Tiny models that between them use every option the presets use.
CASES = [
    # plain timm ViT (UNI, GigaPath and Kaiko S/B are this with other sizes)
    dict(name="plain", dim=32, depth=2, heads=4, mlp_hidden=64, mlp="gelu", patch=8, img=32, cls=True,
         regs=0, no_embed_class=False, layer_scale=False, eps=1e-6, pool="cls", keys="timm", run=32),
    # DINOv2 with registers (H-optimus, UNI2-h, Kaiko L/14): SwiGLU, LayerScale, registers outside
    # pos_embed, built at 48 (6 x 6) and run at 32 (4 x 4): position embeddings resampled down.
    dict(name="dinov2_reg", dim=32, depth=2, heads=2, mlp_hidden=96, mlp="swiglu_packed", patch=8, img=48, cls=True,
         regs=2, no_embed_class=True, layer_scale=True, eps=1e-6, pool="cls", keys="timm", run=32),
    # Virchow2: registers inside pos_embed, class token + mean of the patch tokens; built at 24
    # (3 x 3) and run at 32: resampled up.
    dict(name="virchow2", dim=32, depth=2, heads=4, mlp_hidden=80, mlp="swiglu_packed", patch=8, img=24, cls=True,
         regs=2, no_embed_class=False, layer_scale=True, eps=1e-6, pool="cls_mean", keys="timm", run=32),
    # Phikon: Hugging Face ViTModel layout, LayerNorm eps 1e-12, with its pooler (not the trunk's)
    dict(name="hf_vit", dim=32, depth=2, heads=4, mlp_hidden=64, mlp="gelu", patch=8, img=32, cls=True,
         regs=0, no_embed_class=False, layer_scale=False, eps=1e-12, pool="cls", keys="hf_vit", run=32),
    # CONCH v1: a plain ViT whose tokens go through an attentional pooler (one query,
    # nn.MultiheadAttention with kdim = vdim = dim) and a LayerNorm; the file nests the trunk in
    # visual.trunk. beside a text tower and a captioning pooler that are not image features.
    dict(name="conch", dim=32, depth=2, heads=4, mlp_hidden=64, mlp="gelu", patch=8, img=48, cls=True,
         regs=0, no_embed_class=False, layer_scale=False, eps=1e-6, pool="attn_pool", pool_dim=16, pool_heads=2,
         keys="conch", run=32),
    # Hibou: Hugging Face Dinov2Model with registers (the class token's position embedding in
    # position_embeddings, the registers without one), LayerScale; the file's grid (6 x 6) is not
    # the built one (4 x 4): kept, and resampled per input as transformers does.
    dict(name="hf_dinov2_reg", dim=32, depth=2, heads=4, mlp_hidden=64, mlp="gelu", patch=8, img=32, file_img=48,
         cls=True, regs=2, no_embed_class=True, layer_scale=True, eps=1e-6, pool="cls", keys="hf_dinov2",
         pos_resample="bicubic_hf", pos_load="adopt", run=32),
    # Dinov2Model with its SwiGLU MLP (weights_in / weights_out) and no registers (Phikon-v2's layout).
    dict(name="hf_dinov2_swiglu", dim=32, depth=2, heads=4, mlp_hidden=96, mlp="swiglu_packed", patch=8, img=32,
         cls=True, regs=0, no_embed_class=False, layer_scale=True, eps=1e-6, pool="cls", keys="hf_dinov2",
         pos_resample="bicubic_hf", pos_load="adopt", run=32),
    # CONCH v1.5: the file's pos_embed (6 x 6) is fitted to the built grid (4 x 4) at load,
    # bilinearly, and resampled to the input's (6 x 6) by DINO's scale factor; its own pooler.
    dict(name="conch_v15", dim=32, depth=2, heads=4, mlp_hidden=64, mlp="gelu", patch=8, img=32, file_img=48, cls=True,
         regs=0, no_embed_class=False, layer_scale=True, eps=1e-6, pool="attn_pool_kv", pool_dim=16, pool_heads=2,
         keys="conch_v15", pos_resample="bicubic_dino", pos_load="resample", run=48),
    # weights stored as bfloat16 (as several model files are): loaded as stored, computed in float32
    dict(name="bf16", dim=32, depth=1, heads=4, mlp_hidden=64, mlp="gelu", patch=8, img=32, cls=True,
         regs=0, no_embed_class=False, layer_scale=True, eps=1e-6, pool="mean", keys="timm", run=32, dtype="bf16"),
]


def prefix_len(c):
    return (1 if c["cls"] else 0) + c["regs"]


def timm_weights(c, g):
    """Random weights under timm's names, scaled so that every part changes the output."""
    D, hid = c["dim"], c["mlp_hidden"]
    r = lambda *s, scale=0.2: torch.randn(*s, generator=g) * scale
    grid = (c.get("file_img", c["img"]) // c["patch"]) ** 2
    sd = {"patch_embed.proj.weight": r(D, 3, c["patch"], c["patch"], scale=0.1), "patch_embed.proj.bias": r(D)}
    if c["cls"]:
        sd["cls_token"] = r(1, 1, D, scale=1.0)
    if c["regs"]:
        sd["reg_token"] = r(1, c["regs"], D, scale=1.0)
    sd["pos_embed"] = r(1, grid + (0 if c["no_embed_class"] else prefix_len(c)), D, scale=0.5)
    fc2_in = hid // 2 if c["mlp"] == "swiglu_packed" else hid
    for i in range(c["depth"]):
        b = "blocks.%d." % i
        sd[b + "norm1.weight"], sd[b + "norm1.bias"] = 1 + r(D), r(D)
        sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"] = r(3 * D, D), r(3 * D)
        sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"] = r(D, D), r(D)
        if c["layer_scale"]:
            sd[b + "ls1.gamma"] = 0.5 + r(D)
        sd[b + "norm2.weight"], sd[b + "norm2.bias"] = 1 + r(D), r(D)
        sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"] = r(hid, D), r(hid)
        sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"] = r(D, fc2_in), r(D)
        if c["layer_scale"]:
            sd[b + "ls2.gamma"] = 0.5 + r(D)
    sd["norm.weight"], sd["norm.bias"] = 1 + r(D), r(D)
    if c["pool"] == "attn_pool":
        P, a = c["pool_dim"], "attn_pool_contrast."
        sd[a + "query"] = r(1, P, scale=1.0)
        sd[a + "attn.q_proj_weight"], sd[a + "attn.k_proj_weight"], sd[a + "attn.v_proj_weight"] = r(P, P), r(P, D), r(P, D)
        sd[a + "attn.in_proj_bias"] = r(3 * P)
        sd[a + "attn.out_proj.weight"], sd[a + "attn.out_proj.bias"] = r(P, P), r(P)
        sd[a + "ln_q.weight"], sd[a + "ln_q.bias"] = 1 + r(P), r(P)
        sd[a + "ln_k.weight"], sd[a + "ln_k.bias"] = 1 + r(D), r(D)
        sd["ln_contrast.weight"], sd["ln_contrast.bias"] = 1 + r(P), r(P)
    if c["pool"] == "attn_pool_kv":
        P, a = c["pool_dim"], "attn_pool_contrast."
        sd[a + "query"] = r(1, P, scale=1.0)
        sd[a + "ln_k.weight"], sd[a + "ln_k.bias"] = 1 + r(D), r(D)
        sd[a + "ln_q.weight"], sd[a + "ln_q.bias"] = 1 + r(P), r(P)
        sd[a + "to_q.weight"], sd[a + "to_kv.weight"], sd[a + "to_out.weight"] = r(P, P), r(2 * P, D), r(P, P)
        sd["ln_contrast.weight"], sd["ln_contrast.bias"] = 1 + r(P), r(P)
    return sd


def conch_layout(sd, g):
    """CONCH's file: the trunk under visual.trunk., the pooler under visual., and parts that are not
    image features (captioning pooler, contrastive projection, text tower, logit scale)."""
    out = {}
    for k, v in sd.items():
        pooler = k.startswith("attn_pool_contrast.") or k.startswith("ln_contrast.")
        out[("visual." if pooler else "visual.trunk.") + k] = v
    out["visual.attn_pool_caption.query"] = torch.randn(4, 8, generator=g)
    out["visual.ln_caption.weight"] = torch.randn(8, generator=g)
    out["visual.proj_contrast"] = torch.randn(8, 8, generator=g)
    out["text.token_embedding.weight"] = torch.randn(10, 8, generator=g)
    out["logit_scale"] = torch.tensor(2.0)
    return out


def hf_layout(sd, c, g):
    """The same weights under Hugging Face ViTModel's names, with a pooler that is not the trunk's."""
    D = c["dim"]
    out = {
        "embeddings.cls_token": sd["cls_token"],
        "embeddings.position_embeddings": sd["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"],
    }
    for i in range(c["depth"]):
        b, h = "blocks.%d." % i, "encoder.layer.%d." % i
        q, k, v = sd[b + "attn.qkv.weight"].chunk(3, 0)
        qb, kb, vb = sd[b + "attn.qkv.bias"].chunk(3, 0)
        for name, w, bias in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
            out[h + "attention.attention.%s.weight" % name] = w.clone()
            out[h + "attention.attention.%s.bias" % name] = bias.clone()
        pairs = (("layernorm_before", "norm1"), ("attention.output.dense", "attn.proj"), ("layernorm_after", "norm2"),
                 ("intermediate.dense", "mlp.fc1"), ("output.dense", "mlp.fc2"))
        for hf, timm in pairs:
            out[h + hf + ".weight"], out[h + hf + ".bias"] = sd[b + timm + ".weight"], sd[b + timm + ".bias"]
    out["layernorm.weight"], out["layernorm.bias"] = sd["norm.weight"], sd["norm.bias"]
    out["pooler.dense.weight"], out["pooler.dense.bias"] = torch.randn(D, D, generator=g), torch.randn(D, generator=g)
    return out


def conch_v15_layout(sd):
    """CONCH v1.5's pytorch_model_vision.bin: the trunk under trunk., its pooler and LayerNorm beside it."""
    pooler = ("attn_pool_contrast.", "ln_contrast.")
    return {(k if k.startswith(pooler) else "trunk." + k): v for k, v in sd.items()}


def hf_dinov2_layout(sd, c, g):
    """The same weights under Hugging Face Dinov2Model's names. Its position_embeddings always hold
    the class token's entry; with registers (which have none) that entry is a random vector here,
    taken off the class token so that cls_token + entry is the timm model's class token."""
    D = c["dim"]
    cls, pos = sd["cls_token"], sd["pos_embed"]
    if c["no_embed_class"]:
        entry = torch.randn(1, 1, D, generator=g)
        cls, pos = cls - entry, torch.cat([entry, pos], 1)
    out = {"embeddings.cls_token": cls, "embeddings.mask_token": torch.zeros(1, D), "embeddings.position_embeddings": pos,
           "embeddings.patch_embeddings.projection.weight": sd["patch_embed.proj.weight"],
           "embeddings.patch_embeddings.projection.bias": sd["patch_embed.proj.bias"]}
    if c["regs"]:
        out["embeddings.register_tokens"] = sd["reg_token"]
    mlp = ("weights_in", "weights_out") if c["mlp"] == "swiglu_packed" else ("fc1", "fc2")
    for i in range(c["depth"]):
        b, h = "blocks.%d." % i, "encoder.layer.%d." % i
        q, k, v = sd[b + "attn.qkv.weight"].chunk(3, 0)
        qb, kb, vb = sd[b + "attn.qkv.bias"].chunk(3, 0)
        for name, w, bias in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
            out[h + "attention.attention.%s.weight" % name] = w.clone()
            out[h + "attention.attention.%s.bias" % name] = bias.clone()
        pairs = (("norm1", "norm1"), ("attention.output.dense", "attn.proj"), ("norm2", "norm2"),
                 ("mlp." + mlp[0], "mlp.fc1"), ("mlp." + mlp[1], "mlp.fc2"))
        for hf, timm in pairs:
            out[h + hf + ".weight"], out[h + hf + ".bias"] = sd[b + timm + ".weight"], sd[b + timm + ".bias"]
        out[h + "layer_scale1.lambda1"], out[h + "layer_scale2.lambda1"] = sd[b + "ls1.gamma"], sd[b + "ls2.gamma"]
    out["layernorm.weight"], out["layernorm.bias"] = sd["norm.weight"], sd["norm.bias"]
    return out


def file_layout(sd, c, g):
    keys = c["keys"]
    if keys == "hf_vit":
        return hf_layout(sd, c, g)
    if keys == "hf_dinov2":
        return hf_dinov2_layout(sd, c, g)
    if keys == "conch":
        return conch_layout(sd, g)
    if keys == "conch_v15":
        return conch_v15_layout(sd)
    return sd


def pos_resample(pos, n_prefix, rows, cols, how="bicubic"):
    n = pos.shape[1] - n_prefix
    g = int(round(math.sqrt(n)))
    if (g, g) == (rows, cols):
        return pos
    grid = pos[:, n_prefix:].reshape(1, g, g, -1).permute(0, 3, 1, 2).float()
    if how == "bicubic":  # timm's resample_abs_pos_embed
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False, antialias=True)
    elif how == "bicubic_hf":  # transformers' Dinov2Embeddings.interpolate_pos_encoding
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
    elif how == "bicubic_dino":  # DINO / iBOT (CONCH v1.5's trunk): by a scale factor, 0.1 added
        grid = F.interpolate(grid, scale_factor=((rows + 0.1) / g, (cols + 0.1) / g), mode="bicubic")
        assert grid.shape[-2:] == (rows, cols)
    elif how == "bilinear":  # timm's resample at load time, as CONCH v1.5's loader calls it
        grid = F.interpolate(grid, size=(rows, cols), mode="bilinear", antialias=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)
    return torch.cat([pos[:, :n_prefix], grid], 1)


def load_fit(sd, c):
    """What loading does to a pos_embed of another grid: CONCH v1.5 resamples it to the built one."""
    if c.get("pos_load") != "resample":
        return sd
    grid = c["img"] // c["patch"]
    n_prefix = 0 if c["no_embed_class"] else prefix_len(c)
    return dict(sd, pos_embed=pos_resample(sd["pos_embed"], n_prefix, grid, grid, "bilinear"))


def vit_tokens(sd, c, x):
    D, H = c["dim"], c["heads"]
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=c["patch"])
    B, _, rows, cols = t.shape
    t = t.flatten(2).transpose(1, 2)
    prefix = []
    if c["cls"]:
        prefix.append(sd["cls_token"].expand(B, -1, -1))
    if c["regs"]:
        prefix.append(sd["reg_token"].expand(B, -1, -1))
    how = c.get("pos_resample", "bicubic")
    if c["no_embed_class"]:
        t = torch.cat(prefix + [t + pos_resample(sd["pos_embed"], 0, rows, cols, how)], 1)
    else:
        t = torch.cat(prefix + [t], 1) + pos_resample(sd["pos_embed"], prefix_len(c), rows, cols, how)
    T, d = t.shape[1], D // H
    for i in range(c["depth"]):
        b = "blocks.%d." % i
        h = F.layer_norm(t, (D,), sd[b + "norm1.weight"], sd[b + "norm1.bias"], c["eps"])
        qkv = F.linear(h, sd[b + "attn.qkv.weight"], sd[b + "attn.qkv.bias"]).reshape(B, T, 3, H, d)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))  # [B, H, T, d]
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d), -1) @ v
        a = F.linear(a.transpose(1, 2).reshape(B, T, D), sd[b + "attn.proj.weight"], sd[b + "attn.proj.bias"])
        t = t + (a * sd[b + "ls1.gamma"] if c["layer_scale"] else a)
        h = F.layer_norm(t, (D,), sd[b + "norm2.weight"], sd[b + "norm2.bias"], c["eps"])
        h = F.linear(h, sd[b + "mlp.fc1.weight"], sd[b + "mlp.fc1.bias"])
        if c["mlp"] == "gelu":
            h = F.gelu(h)
        else:
            first, second = h.chunk(2, -1)
            h = F.silu(first) * second
        m = F.linear(h, sd[b + "mlp.fc2.weight"], sd[b + "mlp.fc2.bias"])
        t = t + (m * sd[b + "ls2.gamma"] if c["layer_scale"] else m)
    return F.layer_norm(t, (D,), sd["norm.weight"], sd["norm.bias"], c["eps"])


def attn_pool(sd, c, tokens):
    """CONCH's AttentionalPooler through torch's own multi-head attention, then ln_contrast."""
    P, a = c["pool_dim"], "attn_pool_contrast."
    x = F.layer_norm(tokens, (c["dim"],), sd[a + "ln_k.weight"], sd[a + "ln_k.bias"], 1e-5).permute(1, 0, 2)
    q = F.layer_norm(sd[a + "query"], (P,), sd[a + "ln_q.weight"], sd[a + "ln_q.bias"], 1e-5)
    q = q.unsqueeze(1).repeat(1, x.shape[1], 1)
    out, _ = F.multi_head_attention_forward(
        q, x, x, P, c["pool_heads"], None, sd[a + "attn.in_proj_bias"], None, None, False, 0.0,
        sd[a + "attn.out_proj.weight"], sd[a + "attn.out_proj.bias"], training=False, need_weights=False,
        use_separate_proj_weight=True, q_proj_weight=sd[a + "attn.q_proj_weight"],
        k_proj_weight=sd[a + "attn.k_proj_weight"], v_proj_weight=sd[a + "attn.v_proj_weight"])
    return F.layer_norm(out.permute(1, 0, 2)[:, 0], (P,), sd["ln_contrast.weight"], sd["ln_contrast.bias"], 1e-5)


def attn_pool_kv(sd, c, tokens):
    """CONCH v1.5's AttentionalPooler as its source writes it (einsum over heads), then ln_contrast."""
    P, a, H = c["pool_dim"], "attn_pool_contrast.", c["pool_heads"]
    B = tokens.shape[0]
    x = F.layer_norm(tokens, (c["dim"],), sd[a + "ln_k.weight"], sd[a + "ln_k.bias"], 1e-5)
    q = F.layer_norm(sd[a + "query"], (P,), sd[a + "ln_q.weight"], sd[a + "ln_q.bias"], 1e-5).expand(B, -1, -1)
    q = F.linear(q, sd[a + "to_q.weight"])
    k, v = F.linear(x, sd[a + "to_kv.weight"]).chunk(2, -1)
    split = lambda t: t.reshape(B, t.shape[1], H, P // H).transpose(1, 2)  # [B, H, n, d]
    q, k, v = split(q) * (P // H) ** -0.5, split(k), split(v)
    sim = torch.einsum("bhid,bhjd->bhij", q, k)
    attn = (sim - sim.amax(-1, keepdim=True)).softmax(-1)
    out = torch.einsum("bhij,bhjd->bhid", attn, v).transpose(1, 2).reshape(B, -1, P)
    out = F.linear(out, sd[a + "to_out.weight"])[:, 0]
    return F.layer_norm(out, (P,), sd["ln_contrast.weight"], sd["ln_contrast.bias"], 1e-5)


def pooled(tokens, c, sd=None):
    if c["pool"] == "attn_pool":
        return attn_pool(sd, c, tokens)
    if c["pool"] == "attn_pool_kv":
        return attn_pool_kv(sd, c, tokens)
    patches = tokens[:, prefix_len(c):]
    if c["pool"] == "cls":
        return tokens[:, 0]
    if c["pool"] == "cls_mean":
        return torch.cat([tokens[:, 0], patches.mean(1)], -1)
    return patches.mean(1)


def shapes(c):
    """Every parameter's timm name and shape for the build arguments, without making weights."""
    D, hid, p = c["dim"], c["mlp_hidden"], c["patch"]
    out = {"patch_embed.proj.weight": [D, 3, p, p], "patch_embed.proj.bias": [D]}
    if c["cls"]:
        out["cls_token"] = [1, 1, D]
    if c["regs"]:
        out["reg_token"] = [1, c["regs"], D]
    out["pos_embed"] = [1, (c["img"] // p) ** 2 + (0 if c["no_embed_class"] else prefix_len(c)), D]
    for i in range(c["depth"]):
        b = "blocks.%d." % i
        out.update({b + "norm1.weight": [D], b + "norm1.bias": [D], b + "attn.qkv.weight": [3 * D, D],
                    b + "attn.qkv.bias": [3 * D], b + "attn.proj.weight": [D, D], b + "attn.proj.bias": [D],
                    b + "norm2.weight": [D], b + "norm2.bias": [D], b + "mlp.fc1.weight": [hid, D],
                    b + "mlp.fc1.bias": [hid], b + "mlp.fc2.weight": [D, hid // 2 if c["mlp"] == "swiglu_packed" else hid],
                    b + "mlp.fc2.bias": [D]})
        if c["layer_scale"]:
            out[b + "ls1.gamma"], out[b + "ls2.gamma"] = [D], [D]
    out["norm.weight"], out["norm.bias"] = [D], [D]
    if c["pool"] == "attn_pool":
        P, a = c["pool_dim"], "attn_pool_contrast."
        out.update({a + "query": [1, P], a + "attn.q_proj_weight": [P, P], a + "attn.k_proj_weight": [P, D],
                    a + "attn.v_proj_weight": [P, D], a + "attn.in_proj_bias": [3 * P],
                    a + "attn.out_proj.weight": [P, P], a + "attn.out_proj.bias": [P], a + "ln_q.weight": [P],
                    a + "ln_q.bias": [P], a + "ln_k.weight": [D], a + "ln_k.bias": [D],
                    "ln_contrast.weight": [P], "ln_contrast.bias": [P]})
    if c["pool"] == "attn_pool_kv":
        P, a = c["pool_dim"], "attn_pool_contrast."
        out.update({a + "query": [1, P], a + "ln_k.weight": [D], a + "ln_k.bias": [D], a + "ln_q.weight": [P],
                    a + "ln_q.bias": [P], a + "to_q.weight": [P, P], a + "to_kv.weight": [2 * P, D],
                    a + "to_out.weight": [P, P], "ln_contrast.weight": [P], "ln_contrast.bias": [P]})
    return out


def make(out_dir):
    g = torch.Generator().manual_seed(1234)
    x = torch.rand(2, 3, 48, 48, generator=g)
    torch.save({"x": x}, out_dir + "/input.pt")
    for c in CASES:
        sd = timm_weights(c, g)
        if c.get("dtype") == "bf16":
            sd = {k: v.to(torch.bfloat16) for k, v in sd.items()}
        torch.save(file_layout(sd, c, g), "%s/%s.pt" % (out_dir, c["name"]))
        with torch.no_grad():
            sd32 = load_fit({k: v.float() for k, v in sd.items()}, c)
            tokens = vit_tokens(sd32, c, x[..., : c["run"], : c["run"]])
        torch.save({"tokens": tokens, "pooled": pooled(tokens, c, sd32)}, "%s/%s_out.pt" % (out_dir, c["name"]))
    with open(out_dir + "/cases.json", "w") as f:
        json.dump(CASES, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "shapes":
        # Each line of PRESETS.jsonl describes a preset (ips encoders --json): print its name, its
        # parameters' shapes and their count.
        for line in open(sys.argv[2]):
            c = json.loads(line)
            s = shapes(c)
            print(json.dumps({"name": c["name"], "params": sum(math.prod(v) for v in s.values()), "shapes": s}))
    else:
        sys.exit("usage: vit_peer.py make DIR | shapes PRESETS.jsonl")
