#!/usr/bin/python3
"""Peer of tests/interop/torch_file_test.cpp: real PyTorch files for the C++ reader, and checks of
the files the C++ writer produced.

  make_state_dicts.py make  DIR   write *.pth files, expected.json and raw trunk inputs/outputs
  make_state_dicts.py check DIR   verify rt_*.pth written by the C++ side; exit 0 when all match

Needs torch and torchvision (Debian: python3-torch, python3-torchvision) and no network.
"""
import collections
import json
import os
import sys

try:
    import torch
    import torchvision
except ImportError as e:  # the C++ test turns this exit code into a failure with this message
    sys.stderr.write(f"{sys.executable}: cannot import torch/torchvision ({e}); install python3-torch "
                     "and python3-torchvision\n")
    sys.exit(3)


def flatten(obj, prefix, out):
    """The C++ reader's flattening rule: dotted keys, numbered list items, tensors only."""
    join = lambda k: f"{prefix}.{k}" if prefix else str(k)
    if isinstance(obj, torch.Tensor):
        out.append((prefix, obj))
    elif isinstance(obj, dict):
        for k, v in obj.items():
            flatten(v, join(k), out)
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            flatten(v, join(i), out)
    return out


def describe(tensors):
    """Per key: dtype, shape, stride, offset, sums (and all values for small tensors)."""
    storages = {}
    desc = {}
    for key, t in tensors:
        t = t.detach()
        d = t.double().reshape(-1)
        w = (torch.arange(d.numel(), dtype=torch.float64) % 7) + 1
        ptr = t.storage().data_ptr()
        entry = {
            "dtype": str(t.dtype).replace("torch.", ""),
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "offset": t.storage_offset(),
            "sum": float(d.sum()),
            "wsum": float((d * w).sum()),
            "shares_with": storages.setdefault(ptr, key) if t.numel() else key,
        }
        if t.numel() <= 64:
            entry["values"] = [float(x) for x in d]
        desc[key] = entry
    return {"keys": [k for k, _ in tensors], "tensors": desc}


def randomize_bn(model):
    """Random init leaves BatchNorm at identity; make it matter for the forward comparison."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 0.2 - 0.1)
            m.num_batches_tracked.fill_(7)


def trunk_forward(model, x, n_blocks):
    y = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    for layer in [model.layer1, model.layer2, model.layer3, model.layer4][:n_blocks]:
        y = layer(y)
    return torch.flatten(model.avgpool(y), 1)


def write_raw(path, t):
    t.detach().contiguous().float().numpy().astype("<f4").tofile(path)


def misc_tensors():
    """The tensors the C++ round-trip test writes, built by the same formulas."""
    return collections.OrderedDict([
        ("a", torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).transpose(1, 2)),
        ("h", torch.arange(10).half() / 4),
        ("bf", torch.arange(10).to(torch.bfloat16) * 3),
        ("l", torch.arange(5) * 1000000000000 - 7),
        ("b", torch.arange(6) % 2 == 0),
        ("u8", torch.arange(256).to(torch.uint8)),
        ("i8", torch.arange(-5, 5).to(torch.int8)),
        ("d", torch.tensor(3.5, dtype=torch.float64)),
        ("empty", torch.empty(0, 3)),
        ("slice", torch.arange(20, dtype=torch.float32).reshape(4, 5)[:, 1:4]),
    ])


def make(out):
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    expected = {}

    def save(name, obj, **kw):
        torch.save(obj, os.path.join(out, name), **kw)
        expected[name] = describe(flatten(obj, "", []))

    x = torch.randn(2, 3, 64, 64)
    write_raw(os.path.join(out, "x.bin"), x)
    with torch.no_grad():
        for arch in ["resnet18", "resnet50"]:
            model = getattr(torchvision.models, arch)(weights=None)
            randomize_bn(model)
            model.eval()
            save(f"{arch}.pth", model.state_dict())
            write_raw(os.path.join(out, f"{arch}_y4.bin"), trunk_forward(model, x, 4))
            write_raw(os.path.join(out, f"{arch}_y2.bin"), trunk_forward(model, x, 2))

    dtypes = collections.OrderedDict([
        ("f32", torch.randn(3, 4)),
        ("f64", torch.randn(5, dtype=torch.float64)),
        ("f16", torch.randn(2, 3).half()),
        ("bf16", torch.randn(7).to(torch.bfloat16)),
        ("i64", torch.tensor([-3, 0, 2 ** 40 + 1, -(2 ** 50)], dtype=torch.int64)),
        ("i32", torch.tensor([-70000, 5, 2 ** 31 - 1], dtype=torch.int32)),
        ("i16", torch.tensor([-300, 7], dtype=torch.int16)),
        ("i8", torch.tensor([-128, 127], dtype=torch.int8)),
        ("u8", torch.tensor([0, 200, 255], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("scalar", torch.tensor(2.25)),
        ("empty", torch.empty(0, 3)),
    ])
    save("dtypes.pth", dtypes)

    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    save("views.pth", collections.OrderedDict([
        ("base", base), ("t", base.t()), ("slice", base[1:, 1:3]), ("row", base[2]),
        ("strided", base[:, ::2])]))

    small = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    save("nested.pth", {
        "model": small.state_dict(),
        "epoch": 3,
        "optimizer": {"state": {0: {"step": 5, "exp_avg": torch.ones(2, 1, 3, 3)}},
                      "param_groups": [{"lr": 0.1, "params": [0, 1], "betas": (0.9, 0.999)}]},
        "name": "run",
        "lr": 1e-3,
        "flags": (True, None, False),
        "big": 2 ** 40,
        "neg": -5,
        "blob": b"\x00\xff",
        "history": [torch.zeros(2), torch.full((1,), 4.0)],
    })
    save("param.pth", {"w": torch.nn.Parameter(torch.randn(2, 2)), "b": torch.nn.Parameter(torch.zeros(3))})
    save("proto4.pth", small.state_dict(), pickle_protocol=4)
    torch.save(small.state_dict(), os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    return 0


def check(out):
    errors = []

    def load(name):
        return torch.load(os.path.join(out, name), map_location="cpu")

    def same(name, got, want, exact_order=True):
        if not isinstance(got, collections.OrderedDict):
            errors.append(f"{name}: loads as {type(got).__name__}, not OrderedDict")
        if list(got.keys()) != list(want.keys()):
            errors.append(f"{name}: keys {list(got.keys())[:5]}... differ from {list(want.keys())[:5]}...")
            return
        for k in want:
            g, w = got[k], want[k]
            if g.dtype != w.dtype or g.shape != w.shape or not torch.equal(g, w):
                errors.append(f"{name}: '{k}' differs ({g.dtype} {tuple(g.shape)} vs {w.dtype} {tuple(w.shape)})")

    same("rt_misc.pth", load("rt_misc.pth"), misc_tensors())

    original = load("resnet18.pth")
    rt = load("rt_resnet18.pth")
    same("rt_resnet18.pth", rt, original)
    try:
        torchvision.models.resnet18(weights=None).load_state_dict(rt)
    except Exception as e:  # noqa: BLE001 - any failure is reported
        errors.append(f"rt_resnet18.pth: resnet18.load_state_dict: {e}")

    trunk = load("rt_trunk.pth")
    model = torchvision.models.resnet18(weights=None)
    result = model.load_state_dict(trunk, strict=False)
    if sorted(result.missing_keys) != ["fc.bias", "fc.weight"] or result.unexpected_keys:
        errors.append(f"rt_trunk.pth: missing {result.missing_keys}, unexpected {result.unexpected_keys}")
    for k, v in trunk.items():
        if k not in original or not torch.equal(v, original[k]):
            errors.append(f"rt_trunk.pth: '{k}' differs from resnet18.pth")

    for e in errors:
        sys.stderr.write(e + "\n")
    print(f"check: {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.stderr.write(__doc__)
        sys.exit(2)
    sys.exit(make(sys.argv[2]) if sys.argv[1] == "make" else check(sys.argv[2]))
