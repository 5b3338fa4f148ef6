#!/usr/bin/env python3
"""Plots time per batch and peak memory against N for the feature-bag rows of
scripts/bench_compare.py (ours and the reference, lazy and eager sequential).

  scripts/bench_plot.py docs/bench/compare_cpu --out docs/bench/bags_cpu.png
Needs matplotlib (Debian: python3-matplotlib).
"""
import argparse
import glob
import json
import os
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

IMPL_NAMES = {"ips": "ips", "ref": "reference"}
STYLE = {"ips": "-o", "ref": "--s"}


def series(folder):
    """{(impl, mode): [(N, ms, GiB), ...]} from folder/<row>.<impl>.json."""
    out, device = {}, None
    for path in glob.glob(os.path.join(folder, "*.json")):
        name = os.path.basename(path)[:-len(".json")]
        m = re.match(r"(bags|sweep)-(lazy|eagerseq)-N(\d+)\.(ips|ref)$", name)
        if not m:
            continue
        with open(path) as f:
            r = json.load(f)
        if "ms_per_batch" not in r:
            continue
        device = r.get("device", device)
        out.setdefault((m.group(4), m.group(2)), []).append((int(m.group(3)), r["ms_per_batch"], r["peak_mem_gib"],
                                                              r.get("peak_mem_kind", ""), r.get("B")))
    for v in out.values():
        v.sort()
    return out, device


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder")
    p.add_argument("--out", required=True)
    p.add_argument("--title", default=None)
    args = p.parse_args()
    data, device = series(args.folder)
    if not data:
        raise SystemExit(f"bench_plot: no feature-bag rows in {args.folder}")
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    kind = ""
    for (impl, mode), pts in sorted(data.items()):
        label = f"{IMPL_NAMES[impl]}, {'lazy (bag in host memory)' if mode == 'lazy' else 'eager sequential'}"
        ns = [q[0] for q in pts]
        colour = "tab:blue" if impl == "ips" else "tab:red"
        alpha = 1.0 if mode == "lazy" else 0.55
        ax_t.plot(ns, [q[1] / 1000 for q in pts], STYLE[impl], color=colour, alpha=alpha, label=label)
        ax_m.plot(ns, [q[2] for q in pts], STYLE[impl], color=colour, alpha=alpha, label=label)
        kind = pts[0][3]
        B = pts[0][4]
    for ax in (ax_t, ax_m):
        ax.set_xscale("log")
        ax.set_xlabel("patches per slide N (2048-d features)")
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_yscale("log")
    ax_t.set_ylabel("seconds per training batch")
    ax_m.set_ylabel("peak memory, GiB" + (" (CUDA allocator)" if kind == "cuda_allocator_peak" else " (process RSS)"))
    ax_m.set_ylim(bottom=0)
    ax_t.legend(fontsize=8)
    fig.suptitle(args.title or f"Feature bags, B = {B}, M = I = 5000, on {device}")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
