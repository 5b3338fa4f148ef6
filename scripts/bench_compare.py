#!/usr/bin/env python3
"""Runs ours (`ips bench`) and the reference (scripts/bench_reference.py) on the same shapes, one
process per measurement, and prints a side-by-side table with ratios.

  scripts/bench_compare.py --profile cpu --out docs/bench/compare_cpu
  scripts/bench_compare.py --profile gpu --out $OUT/gpu          (scripts/bench_gpu.sh does this)

Every measurement's JSON is written to OUT/<row>.json as soon as it finishes, so a run cut short
keeps what it measured; --only runs a subset of rows (substring match on the row name). The table
goes to stdout and to OUT/table.md; OUT/sweep.json feeds scripts/bench_plot.py.
Standard library only: it runs on a GPU machine that has nothing but PyTorch.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"mnist": "configs/megapixel_mnist.yaml", "traffic": "configs/traffic_signs.yaml",
           "camelyon": "configs/camelyon16_features.yaml"}


def lazy(N, B):
    return {"N": N, "B": B, "B_seq": B, "eager": False}


def eager_seq(N, B):
    return {"N": N, "B": B, "B_seq": 1, "eager": True}


def rows_gpu():
    """(name, config, mode, sets, impls, iters, warmup). impls: ips, ref, ref-tuned."""
    rows = [
        ("mnist-train-B16", "mnist", "train", {"B": 16, "B_seq": 16}, ["ips", "ref", "ref-tuned"], 5, 2),
        ("traffic-train-B16", "traffic", "train", {"B": 16, "B_seq": 16}, ["ips", "ref", "ref-tuned"], 5, 2),
        ("mnist-eval-B16", "mnist", "eval", {"B": 16, "B_seq": 16}, ["ips", "ref"], 5, 2),
        ("traffic-eval-B16", "traffic", "eval", {"B": 16, "B_seq": 16}, ["ips", "ref"], 5, 2),
        ("mnist-infer-B1", "mnist", "eval", {"B": 1, "B_seq": 1}, ["ips", "ref"], 5, 2),
    ]
    # Feature bags, B = 16, M = I = 5000: the issue's rows (lazy N = 250k, eager sequential N = 50k)
    # are points of the sweep that the plot of time and memory against N is drawn from.
    for N in (1000, 10000, 50000, 100000, 250000):
        rows.append((f"bags-lazy-N{N}", "camelyon", "train", lazy(N, 16), ["ips", "ref"], 3, 1))
    for N in (1000, 10000, 50000, 100000):
        rows.append((f"bags-eagerseq-N{N}", "camelyon", "train", eager_seq(N, 16), ["ips", "ref"], 3, 1))
    return rows


def rows_cpu():
    rows = [
        ("mnist-train-B2", "mnist", "train", {"B": 2, "B_seq": 2}, ["ips", "ips-bf16", "ref"], 3, 1),
        ("mnist-infer-B1", "mnist", "eval", {"B": 1, "B_seq": 1}, ["ips", "ips-bf16", "ref"], 3, 1),
        ("traffic-train-B2", "traffic", "train", {"B": 2, "B_seq": 2}, ["ips", "ips-bf16", "ref"], 3, 1),
        ("traffic-infer-B1", "traffic", "eval", {"B": 1, "B_seq": 1}, ["ips", "ips-bf16", "ref"], 3, 1),
    ]
    # Feature bags on a CPU: B = 2 (a batch of 16 at N = 250k is minutes of projector FLOPs on 2 cores).
    for N in (1000, 10000, 50000, 100000, 250000):
        rows.append((f"bags-eagerseq-N{N}", "camelyon", "train", eager_seq(N, 2), ["ips", "ref"], 2, 1))
    return rows


def run(cmd, env=None):
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        return {"error": " | ".join(tail), "returncode": p.returncode, "wall_s": time.time() - t0}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["wall_s"] = time.time() - t0
    return out


def measure(args, impl, cfg_name, mode, sets, iters, warmup):
    common = ["--iters", str(iters), "--warmup", str(warmup)]
    if impl.startswith("ips"):
        cmd = [args.ips, "bench", CONFIGS[cfg_name], "--mode", mode, "--device", args.device, "--json"] + common
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        for k, v in sets.items():
            cmd += ["--set", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
        if impl == "ips-bf16":
            cmd += ["--set", "precision=bf16"]
        return run(cmd)
    cmd = [args.python, os.path.join("scripts", "bench_reference.py"), "--ref", args.ref, "--config", cfg_name,
           "--mode", mode, "--device", args.device] + common
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    if impl == "ref-tuned":
        cmd += ["--tuned"] + (["--compile"] if args.compile else [])
    return run(cmd)


def fmt(x, spec):
    return format(x, spec) if isinstance(x, (int, float)) else "—"


def table(results, rows):
    lines = ["| row | impl | ms/batch | img/s | peak GiB | speed vs reference | memory vs reference |",
             "|---|---|---|---|---|---|---|"]
    for name, *_ in rows:
        by_impl = results.get(name, {})
        ref = by_impl.get("ref", {})
        for impl, r in by_impl.items():
            if "error" in r:
                lines.append(f"| {name} | {impl} | failed: {r['error'][:120]} | | | | |")
                continue
            speed = mem = "—"
            if impl != "ref" and "ms_per_batch" in ref:
                speed = f"{ref['ms_per_batch'] / r['ms_per_batch']:.2f}x"
                mem = f"{r['peak_mem_gib'] / ref['peak_mem_gib']:.2f}x"
            lines.append(f"| {name} | {impl} | {fmt(r.get('ms_per_batch'), '.1f')} | {fmt(r.get('img_per_s'), '.2f')} "
                         f"| {fmt(r.get('peak_mem_gib'), '.3f')} | {speed} | {mem} |")
        tuned = by_impl.get("ref-tuned", {})
        ours = by_impl.get("ips", {})
        if "ms_per_batch" in tuned and "ms_per_batch" in ours:
            lines.append(f"| {name} | ips vs tuned reference | | | | {tuned['ms_per_batch'] / ours['ms_per_batch']:.2f}x "
                         f"| {ours['peak_mem_gib'] / tuned['peak_mem_gib']:.2f}x |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=["cpu", "gpu"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--ips", default=os.path.join("build", "ips"))
    p.add_argument("--ref", default=os.path.join(".ref", "ips"), help="checkout of benbergner/ips")
    p.add_argument("--python", default=sys.executable, help="Python with torch (and torchvision) for the reference")
    p.add_argument("--device", default=None, help="default: cuda for --profile gpu, cpu for cpu")
    p.add_argument("--threads", type=int, default=None, help="default: 2 on cpu, all on gpu")
    p.add_argument("--only", action="append", default=[], help="run rows whose name contains this")
    p.add_argument("--skip-ref", action="store_true", help="ours only")
    p.add_argument("--compile", action="store_true", help="tuned reference also torch.compiles its encoder")
    p.add_argument("--repeat", type=int, default=None,
                   help="rounds per row, implementations alternating (default: 3 on cpu, 1 on gpu; bag rows: 1)")
    args = p.parse_args()
    args.device = args.device or ("cuda" if args.profile == "gpu" else "cpu")
    if args.threads is None:
        args.threads = 2 if args.profile == "cpu" else 0
    if args.repeat is None:
        args.repeat = 3 if args.profile == "cpu" else 1
    rows = rows_gpu() if args.profile == "gpu" else rows_cpu()
    if args.only:
        rows = [r for r in rows if any(s in r[0] for s in args.only)]
    os.makedirs(args.out, exist_ok=True)
    results = {}
    for name, cfg_name, mode, sets, impls, iters, warmup in rows:
        impls = [i for i in impls if not (args.skip_ref and i.startswith("ref"))]
        # Shared hosts drift by tens of percent from one minute to the next: the implementations
        # take turns, --repeat rounds of them, and each keeps its median round.
        rounds = {impl: [] for impl in impls}
        for _ in range(args.repeat if not name.startswith("bags-") else 1):
            for impl in impls:
                r = measure(args, impl, cfg_name, mode, sets, iters, warmup)
                rounds[impl].append(r)
                msg = r.get("error") or f"{r['ms_per_batch']:.1f} ms/batch, peak {r['peak_mem_gib']:.3f} GiB"
                print(f"[{time.strftime('%H:%M:%S')}] {name} {impl}: {msg}", flush=True)
        for impl, runs in rounds.items():
            ok = sorted((r for r in runs if "ms_per_batch" in r), key=lambda r: r["ms_per_batch"])
            r = ok[(len(ok) - 1) // 2] if ok else runs[-1]
            r.update(row=name, impl=impl, config=cfg_name, rounds_ms=[x.get("ms_per_batch") for x in runs])
            results.setdefault(name, {})[impl] = r
            with open(os.path.join(args.out, f"{name}.{impl}.json"), "w") as f:
                json.dump(r, f)
    with open(os.path.join(args.out, "sweep.json"), "w") as f:
        json.dump(results, f, indent=1)
    md = table(results, rows)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
