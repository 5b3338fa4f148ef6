#!/usr/bin/env python3
"""How much of the fp32 selection survives lower precision: runs `ips predict --json` on the same
images with trained weights at precision fp32 and at another precision, and reports the overlap
|selected_fp32 ∩ selected_other| / M per image (and whether the predicted classes agree).

  scripts/selection_agreement.py configs/demo_megapixel_mnist.yaml runs/demo/best.pt \\
      data/megapixel_mnist_demo/test --images 200 --precision bf16 --json docs/bench/selection_bf16.json
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def predict(args, images, precision):
    # Images first: --set takes every value that follows it.
    cmd = [args.ips, "predict", args.config] + images + ["--weights", args.weights, "--json", "--device",
                                                         args.device, "--set", f"precision={precision}"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"selection_agreement: {' '.join(cmd[:4])}... failed: {p.stderr.strip()[-400:]}")
    return {j["image"]: j for j in map(json.loads, p.stdout.strip().splitlines())}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config")
    p.add_argument("weights")
    p.add_argument("image_dir")
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--precision", default="bf16")
    p.add_argument("--device", default="cpu")
    p.add_argument("--ips", default=os.path.join("build", "ips"))
    p.add_argument("--json", default=None, help="write the summary here")
    args = p.parse_args()
    images = sorted(glob.glob(os.path.join(args.image_dir, "*.png")))[:args.images]
    if not images:
        sys.exit(f"selection_agreement: no PNG images in {args.image_dir}")
    ref, low = predict(args, images, "fp32"), predict(args, images, args.precision)
    overlaps, same_class = [], []
    for img in images:
        a, b = ref[img], low[img]
        sa, sb = set(a["selected"]), set(b["selected"])
        overlaps.append(len(sa & sb) / max(1, len(sa)))
        same_class.append(all(max(range(len(pa)), key=pa.__getitem__) == max(range(len(pb)), key=pb.__getitem__)
                              for pa, pb in zip(a["predictions"].values(), b["predictions"].values())))
    summary = {
        "config": args.config, "weights": args.weights, "precision": args.precision, "device": args.device,
        "images": len(images), "M": len(ref[images[0]]["selected"]), "N": ref[images[0]]["N"],
        "overlap_mean": statistics.mean(overlaps), "overlap_min": min(overlaps),
        "overlap_p05": sorted(overlaps)[int(0.05 * (len(overlaps) - 1))],
        "same_argmax_all_tasks": sum(same_class) / len(same_class),
    }
    print(f"{args.precision} vs fp32 on {len(images)} images (N {summary['N']}, M {summary['M']}): selected-set "
          f"overlap mean {summary['overlap_mean']:.4f}, 5th percentile {summary['overlap_p05']:.4f}, "
          f"min {summary['overlap_min']:.4f}; same predicted class on every task: "
          f"{100 * summary['same_argmax_all_tasks']:.1f} % of images")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)


if __name__ == "__main__":
    main()
