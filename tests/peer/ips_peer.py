#!/usr/bin/python3
"""An independent PyTorch implementation of IPS inference as SPEC §1 states it: the peer that
tests/cli/parity_test.cpp holds `ips predict` against. Written from the SPEC, not from the
reference code or ours, so that an agreement means both implement the same function.

  ips_peer.py make   DIR CONFIG   write DIR/weights.pth (reference layout, torch.save of an
                                  OrderedDict), DIR/image.png and DIR/expected.json
  ips_peer.py checkpoint FILE CONFIG OUT
                                  torch.load one of our checkpoints, load_state_dict its 'model'
                                  into this model (strict), print what else the file holds as JSON
                                  and torch.save the loaded model's state_dict to OUT

CONFIG is mnist (SPEC §1.5 Megapixel MNIST: 1500x1500 grey, N 900, M = I = 100) or traffic
(1200x1600 RGB, N 192, M 10, I 32, ImageNet normalisation). Eval mode, shuffle off, fp32, CPU.
Needs Debian's python3-torch and python3-torchvision; no network.
"""
import collections
import json
import math
import os
import sys

try:
    import torch
    import torch.nn as nn
    import torchvision
    import torch_kernels  # noqa: F401 (turns off wrong oneDNN kernels)
except ImportError as e:  # the C++ test reports this exit code with the message
    sys.stderr.write(f"{sys.executable}: cannot import torch/torchvision ({e}); install python3-torch "
                     "and python3-torchvision\n")
    sys.exit(3)

CONFIGS = {
    "mnist": dict(H_img=1500, W_img=1500, chans=1, patch=50, M=100, I=100, enc="resnet18", blocks=2,
                  D=128, heads=8, dk=16, d_inner=512, use_pos=True, imagenet=False,
                  tasks=[("majority", "softmax", 10), ("max", "softmax", 10), ("top", "softmax", 10),
                         ("multi", "sigmoid", 10)]),
    "traffic": dict(H_img=1200, W_img=1600, chans=3, patch=100, M=10, I=32, enc="resnet18", blocks=4,
                    D=512, heads=8, dk=64, d_inner=2048, use_pos=False, imagenet=True,
                    tasks=[("sign", "softmax", 4)]),
}


def trunk_make(cfg):
    """SPEC §1.3: the torchvision ResNet as a numbered sequence, cut after n_res_blocks layers."""
    resnet = getattr(torchvision.models, cfg["enc"])()
    if cfg["chans"] == 1:
        resnet.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    layers = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4][:cfg["blocks"]]
    return nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool, *layers)


class CrossAttention(nn.Module):
    """SPEC §1.2: learned queries attend over the patch embeddings; post-norm with the raw query."""

    def __init__(self, n_token, D, heads, dk):
        super().__init__()
        self.heads, self.dk = heads, dk
        bound = math.sqrt(1.0 / dk)
        self.q = nn.Parameter(torch.empty(1, n_token, D).uniform_(-bound, bound))
        self.q_w = nn.Linear(D, heads * dk, bias=False)
        self.k_w = nn.Linear(D, heads * dk, bias=False)
        self.v_w = nn.Linear(D, heads * dk, bias=False)
        self.fc = nn.Linear(heads * dk, D, bias=False)
        self.layer_norm = nn.LayerNorm(D, eps=1e-6)

    def weights(self, x):  # x [B, N, D] -> attention [B, heads, tokens, N]
        B, N, _ = x.shape
        T = self.q.shape[1]
        q = self.q_w(self.q).view(1, T, self.heads, self.dk).transpose(1, 2)
        k = self.k_w(x).view(B, N, self.heads, self.dk).transpose(1, 2)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dk), dim=-1)

    def forward(self, x):
        B, N, _ = x.shape
        attn = self.weights(x)
        v = self.v_w(x).view(B, N, self.heads, self.dk).transpose(1, 2)
        out = (attn @ v).transpose(1, 2).reshape(B, -1, self.heads * self.dk)
        return self.layer_norm(self.fc(out) + self.q), attn


class MLP(nn.Module):
    def __init__(self, D, d_inner):
        super().__init__()
        self.w_1 = nn.Linear(D, d_inner)
        self.w_2 = nn.Linear(d_inner, D)
        self.layer_norm = nn.LayerNorm(D, eps=1e-6)

    def forward(self, x):
        return self.layer_norm(x + self.w_2(torch.relu(self.w_1(x))))


class Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.crs_attn = CrossAttention(len(cfg["tasks"]), cfg["D"], cfg["heads"], cfg["dk"])
        self.mlp = MLP(cfg["D"], cfg["d_inner"])

    def forward(self, x):
        y, attn = self.crs_attn(x)
        return self.mlp(y), attn


class Peer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.encoder = trunk_make(cfg)
        self.transf = Transformer(cfg)
        self.output_layers = nn.ModuleDict(
            {name: nn.Sequential(nn.Linear(cfg["D"], n)) for name, _, n in cfg["tasks"]})

    def embed(self, patches):  # [n, C, P, P] -> [n, D]
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.encoder(patches), 1), 1)


def pos_table(n, D):
    """SPEC §1.3: pe[n, 2k] = sin(n / 10000^(2k/D)), pe[n, 2k+1] = cos(same)."""
    pos = torch.arange(n, dtype=torch.float64)[:, None]
    div = torch.pow(10000.0, torch.arange(0, D, 2, dtype=torch.float64) / D)
    pe = torch.zeros(n, D, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos / div)
    pe[:, 1::2] = torch.cos(pos / div)
    return pe.float()


def patches_of(image, P):
    """[C, H, W] -> [N, C, P, P], row-major grid index."""
    C = image.shape[0]
    grid = image.unfold(1, P, P).unfold(2, P, P)  # [C, rows, cols, P, P]
    return grid.permute(1, 2, 0, 3, 4).reshape(-1, C, P, P)


def score(model, emb, idx, pe):
    """SPEC §1.1.5: attention over the rows, averaged over heads, then over tokens."""
    x = emb + pe[idx] if pe is not None else emb
    return model.transf.crs_attn.weights(x[None])[0].mean(0).mean(0)


@torch.no_grad()
def ips_predict(model, patches):
    """SPEC §1.1 with shuffle off, then the aggregator on the selected patches."""
    cfg = model.cfg
    M, I = cfg["M"], cfg["I"]
    N = patches.shape[0]
    pe = pos_table(N, cfg["D"]) if cfg["use_pos"] else None
    idx = torch.arange(min(M, N))
    mem = model.embed(patches[idx])
    margins = []
    for start in range(M, N, I):
        chunk = torch.arange(start, min(start + I, N))
        cand_emb = torch.cat([mem, model.embed(patches[chunk])])
        cand_idx = torch.cat([idx, chunk])
        s = score(model, cand_emb, cand_idx, pe)
        order = torch.sort(s, descending=True).indices
        margins.append(float((s[order[M - 1]] - s[order[M]]) / s[order[M - 1]]))
        keep = order[:M]
        mem, idx = cand_emb[keep], cand_idx[keep]
    emb = model.embed(patches[idx])
    x = emb + pe[idx] if pe is not None else emb
    y, attn = model.transf(x[None])
    probs = {}
    for t, (name, act, _) in enumerate(cfg["tasks"]):
        logits = model.output_layers[name](y[0, t])
        probs[name] = (torch.softmax(logits, -1) if act == "softmax" else torch.sigmoid(logits)).tolist()
    attn_score = attn[0].mean(0).mean(0)
    return {"N": N, "selected": idx.tolist(), "scores": attn_score.tolist(), "predictions": probs,
            "min_relative_margin": min(margins) if margins else None}


def randomize_bn(model, gen):
    """Fresh BatchNorm is the identity in eval mode; make its statistics matter."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
            m.bias.data.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)


def image_make(cfg, gen):
    """Smooth structure at several scales plus noise: patches differ clearly, so the selection
    boundary is not decided by rounding."""
    H, W, C = cfg["H_img"], cfg["W_img"], cfg["chans"]
    img = torch.zeros(C, H, W)
    for cells, weight in ((6, 0.5), (30, 0.3), (150, 0.2)):
        coarse = torch.rand(1, C, cells, cells * W // H, generator=gen)
        img += weight * nn.functional.interpolate(coarse, size=(H, W), mode="bilinear", align_corners=False)[0]
    img += 0.15 * torch.rand(C, H, W, generator=gen)
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def make(out, name):
    cfg = CONFIGS[name]
    torch.manual_seed(7)
    gen = torch.Generator().manual_seed(11)
    model = Peer(cfg)
    randomize_bn(model, gen)
    model.eval()
    os.makedirs(out, exist_ok=True)
    sd = model.state_dict()
    assert isinstance(sd, collections.OrderedDict)
    torch.save(sd, os.path.join(out, "weights.pth"))
    image = image_make(cfg, gen)
    torchvision.io.write_png(image, os.path.join(out, "image.png"))
    x = image.float() / 255
    if cfg["imagenet"]:
        mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
        std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
        x = (x - mean) / std
    result = ips_predict(model, patches_of(x, cfg["patch"]))
    result["parameters"] = sum(p.numel() for p in model.parameters())
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(result, f)


def checkpoint(path, name, out):
    ckpt = torch.load(path)
    model = Peer(CONFIGS[name])
    model.load_state_dict(ckpt["model"])  # strict: every key and shape must match
    torch.save(model.state_dict(), out)
    print(json.dumps({"epoch": ckpt["epoch"], "step": ckpt["step"], "keys": len(ckpt["model"]),
                      "optimizer_bytes": int(ckpt["optimizer_libtorch"].numel())
                      if "optimizer_libtorch" in ckpt else 0}))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make" and sys.argv[3] in CONFIGS:
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "checkpoint" and sys.argv[3] in CONFIGS:
        checkpoint(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.stderr.write(__doc__)
        sys.exit(2)
