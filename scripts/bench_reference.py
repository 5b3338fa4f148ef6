#!/usr/bin/env python3
"""Times the reference implementation (benbergner/ips) on synthetic inputs of a config's shapes.

The reference is not part of this repository: clone it into an ignored folder (.ref/ips) and pass
--ref. This script only composes the reference's own functions (IPSNet.ips, init_batch, fill_batch,
compute_loss) the way its training loop does, so what is timed is the reference's code path:
selection + forward + backward + optimizer step for B images (train), selection + forward (eval).
It prints one JSON object on its last line, with the same keys as `ips bench --json`.

--tuned flips the switches a PyTorch user has without touching the reference's code: TF32, cuDNN
autotuning, channels-last weights, bf16 autocast, and (--compile) torch.compile of the encoder.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time
import types


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", required=True, help="checkout of benbergner/ips")
    p.add_argument("--config", required=True, choices=["mnist", "traffic", "camelyon"],
                   help="which of the reference's config files gives the shapes")
    p.add_argument("--mode", default="train", choices=["train", "eval"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (B, B_seq, N, M, I, eager, shuffle, ...)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave)")
    p.add_argument("--tuned", action="store_true", help="TF32, cudnn.benchmark, channels-last, bf16 autocast")
    p.add_argument("--compile", action="store_true", help="with --tuned: torch.compile the encoder")
    return p.parse_args()


def yaml_load(path):
    try:
        import yaml
        with open(path) as f:
            return yaml.safe_load(f)
    except ImportError:
        return yaml_load_minimal(path)


def scalar(text):
    text = text.strip().strip("'\"")
    if text in ("True", "False", "true", "false"):
        return text.lower() == "true"
    if text.startswith("["):
        return [scalar(v) for v in text.strip("[]").split(",")]
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def yaml_load_minimal(path):
    """The reference's config files use only `key: value` lines nested by indentation."""
    root, stack = {}, [(-1, None)]
    stack[0] = (-1, root)
    with open(path) as f:
        for raw in f:
            line = raw.split("#", 1)[0].rstrip()
            if not line.strip():
                continue
            indent = len(line) - len(line.lstrip())
            key, _, value = line.strip().partition(":")
            while stack[-1][0] >= indent:
                stack.pop()
            parent = stack[-1][1]
            if value.strip():
                parent[key] = scalar(value)
            else:
                parent[key] = {}
                stack.append((indent, parent[key]))
    return root


def reference_import(ref_dir):
    sys.path.insert(0, os.path.abspath(ref_dir))
    try:
        import sklearn.metrics  # noqa: F401  (only the reference's Logger uses it; not timed)
    except ImportError:
        stub = types.ModuleType("sklearn.metrics")
        stub.accuracy_score = stub.roc_auc_score = None
        sys.modules["sklearn"] = types.ModuleType("sklearn")
        sys.modules["sklearn.metrics"] = stub
    from architecture.ips_net import IPSNet
    from training.iterative import init_batch, fill_batch, compute_loss
    from utils.utils import Struct
    return IPSNet, init_batch, fill_batch, compute_loss, Struct


def peak_mem_gib(torch, device):
    if device.type == "cuda":
        return torch.cuda.memory_stats(device)["allocated_bytes.all.peak"] / 2**30, "cuda_allocator_peak"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "peak_rss"


def main():
    args = parse_args()
    import torch
    from torch import nn

    IPSNet, init_batch, fill_batch, compute_loss, Struct = reference_import(args.ref)
    c = yaml_load(os.path.join(args.ref, "config", args.config + "_config.yml"))
    if args.config == "traffic":
        c["pretrained"] = False  # nothing is downloaded; weights do not change the timing
    c.setdefault("N", 10000)
    for kv in args.set:
        key, _, value = kv.partition("=")
        c[key] = scalar(value)
    c["track_efficiency"] = False
    conf = Struct(**c)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(conf.seed)
    if args.tuned and device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    net = IPSNet(device, conf).to(device)
    if args.tuned and conf.is_image:
        net = net.to(memory_format=torch.channels_last)
    if args.compile:
        net.encoder = torch.compile(net.encoder)
    optimizer = torch.optim.AdamW(net.parameters(), lr=conf.lr, weight_decay=conf.wd)
    criterions = {t["name"]: nn.NLLLoss() if t["act_fn"] == "softmax" else nn.BCELoss()
                  for t in conf.tasks.values()}
    autocast_dtype = torch.bfloat16 if args.tuned else None

    # Inputs as the reference's data sets hand them out: float32 patches [B_seq, N, C, P, P] (or
    # feature bags [B_seq, N, F]), on the device when eager, in (pinned, if configured) host
    # memory when lazy. Feature bags are one tensor expanded over the B_seq images, as ours are.
    N, B, B_seq = conf.N, conf.B, conf.B_seq
    g = torch.Generator().manual_seed(conf.seed)
    if conf.is_image:
        shape = (B_seq, N, conf.n_chan_in, *conf.patch_size)
        patches = torch.rand(shape, generator=g)
    else:
        patches = torch.randn((1, N, conf.n_chan_in), generator=g).expand(B_seq, -1, -1)
    if conf.eager:
        patches = patches.to(device)
    elif device.type == "cuda" and getattr(conf, "pin_memory", False):
        patches = patches.pin_memory()
    labels = {}  # the layouts of the reference's init_batch
    for t in conf.tasks.values():
        if t["metric"] == "multilabel_accuracy":
            labels[t["name"]] = torch.randint(0, 2, (B_seq, conf.n_class), generator=g).float()
        else:
            labels[t["name"]] = torch.randint(0, max(2, conf.n_class) if t["act_fn"] == "sigmoid" else conf.n_class,
                                              (B_seq,), generator=g)
    data = dict(labels, input=patches)

    def autocast():
        if autocast_dtype is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=autocast_dtype)

    def step(train):
        net.train(train)
        with torch.set_grad_enabled(train), autocast():
            mem_patch, mem_pos_enc, batch_labels = init_batch(device, conf)
            n_prep, n_prep_batch = 0, 0
            while n_prep < B:
                mem_patch_iter, mem_pos_iter = net.ips(data["input"])
                mem_patch, mem_pos_enc, batch_labels, n_prep, n_prep_batch = fill_batch(
                    mem_patch, mem_pos_enc, batch_labels, data, n_prep, n_prep_batch, mem_patch_iter,
                    mem_pos_iter, conf)
            if train:
                optimizer.zero_grad()
            loss, _ = compute_loss(net, mem_patch, mem_pos_enc, criterions, batch_labels, conf)
        if train:
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    train = args.mode == "train"
    for _ in range(args.warmup):
        step(train)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(max(1, args.iters)):
        t0 = time.perf_counter()
        step(train)
        times.append(1000.0 * (time.perf_counter() - t0))
    ms = statistics.median(times)
    peak, kind = peak_mem_gib(torch, device)
    result = {
        "impl": "reference-tuned" if args.tuned else "reference",
        "config": args.config, "mode": args.mode, "device": str(device),
        "ms_per_batch": ms, "img_per_s": 1000.0 * B / ms, "peak_mem_gib": peak, "peak_mem_kind": kind,
        "B": B, "B_seq": B_seq, "N": N, "M": conf.M, "I": conf.I, "eager": bool(conf.eager),
        "ms_all": times, "threads": torch.get_num_threads(), "torch_version": torch.__version__,
        "tuned": args.tuned, "compile": args.compile,
    }
    print(f"reference{' (tuned)' if args.tuned else ''} {args.mode} {device}: B {B}, N {N}, M {conf.M}, "
          f"I {conf.I}: {ms:.1f} ms/batch, {result['img_per_s']:.2f} img/s, peak {peak:.3f} GiB ({kind})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
