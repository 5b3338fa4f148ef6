#!/usr/bin/python3
"""What a Python call costs against the CLI: tiles/s of reading random tiles of a slide through
`import ips` against `ips bench-read` on the same file, same tile size, same number of tiles.

  PYTHONPATH=build/python /usr/bin/python3 scripts/bench_python.py SLIDE [--tiles 2000] [--patch 256]
      [--level 0] [--batch 256] [--threads 2] [--json OUT]

Each side reads the tiles in a random order (as bench-read does: it defeats read-ahead and tile
caches) and turns them into ImageNet-normalised float32, what an encoder receives; the module's
rates are the better of two passes (bench-read's one pass reads each tile once). The module is
measured four ways: batches of `batch` tiles read ahead on ips's reader thread (iterating an
ips.Tiles) normalised by ips as they are decoded (normalize="imagenet", what bench-read does), the
same as uint8 normalised in torch afterwards, one tile per call (tiles[i], as a map-style Dataset
is used), and a torch DataLoader with two worker processes over the Tiles. Prints one line per
way and writes the JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

import ips

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def finish(batch):
    """uint8 [b, 3, h, w] -> what bench-read hands the encoder."""
    return batch.float().div_(255).sub_(MEAN).div_(STD)


def timed(work, runs=2):
    """Tiles/s of the best of `runs` runs: the first also pays for first touches of the heap."""
    best = 0.0
    for _ in range(runs):
        start = time.perf_counter()
        n = work()
        best = max(best, n / (time.perf_counter() - start))
    return best


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("slide")
    p.add_argument("--tiles", type=int, default=2000)
    p.add_argument("--patch", type=int, default=256)
    p.add_argument("--level", type=int, default=0)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--ips", default=os.path.join(os.path.dirname(__file__), "..", "build", "ips"))
    a = p.parse_args()

    cli = subprocess.run([a.ips, "bench-read", a.slide, "--tiles", str(a.tiles), "--patch", str(a.patch), "--level",
                          str(a.level), "--chunk", str(a.batch), "--threads", str(a.threads), "--json"],
                         capture_output=True, text=True, check=True)
    cli_json = json.loads(cli.stdout.strip().splitlines()[-1])

    ips.set_threads(a.threads)
    slide = ips.Slide(a.slide)
    grid = slide.grid_tiles(patch=a.patch, level=a.level)
    coords = grid.coords[torch.randperm(len(grid))[:a.tiles]]
    raw = slide.tiles(coords, patch=a.patch, level=a.level, batch=a.batch)
    ready = slide.tiles(coords, patch=a.patch, level=a.level, batch=a.batch, normalize="imagenet")
    n = len(ready)

    def batches(tiles, work):
        def run():
            for _, b in tiles:
                work(b)
            return n
        return run

    def one_by_one():
        for i in range(n):
            ready[i]
        return n

    def loader():
        for _ in torch.utils.data.DataLoader(ready, batch_size=a.batch, num_workers=2):
            pass
        return n

    rates = {"ips bench-read (CLI)": cli_json["patches_per_s"],
             "batches, normalised in ips": timed(batches(ready, lambda b: None)),
             "batches of uint8, normalised in torch": timed(batches(raw, finish)),
             "one tile per call, normalised in ips": timed(one_by_one),
             "DataLoader, 2 workers": timed(loader)}
    base = rates["ips bench-read (CLI)"]
    for what, rate in rates.items():
        print(f"{what:40s} {rate:8.0f} tiles/s  {rate / base:5.2f}x the CLI")
    out = {"slide": a.slide, "tiles": n, "patch": a.patch, "level": a.level, "batch": a.batch, "threads": a.threads,
           "tiles_per_s": rates, "versions": ips.versions(), "python": sys.version.split()[0]}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
